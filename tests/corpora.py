"""A corpus builder for tests: given records, one unit, their splits given."""

from data_pipelines import corpus


class GivenRecords(corpus.Builder):
    """The given records as a corpus; `deduplicate=False` keeps repeats.

    `split` is every record's split name, or a function of the record that returns it.
    """

    def __init__(self, name, records, split="train", deduplicate=True):
        self.name, self.records = name, records
        self._split_of = split if callable(split) else (lambda record: split)
        self._deduplicate = deduplicate

    def units(self):
        return [corpus.Unit("all")]

    def extract(self, unit, skipped):
        return self.records

    def split(self, record):
        return self._split_of(record)

    def dedup_key(self, record):
        return super().dedup_key(record) if self._deduplicate else None

    def description(self):
        # The records and their splits: other records make another corpus, not a cached one.
        splits = [self._split_of(r) for r in self.records]
        return {"records": self.records, "splits": splits, "dedup": self._deduplicate}
