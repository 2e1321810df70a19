"""A corpus builder for tests: given records, one unit, one split."""

from data_pipelines import corpus


class GivenRecords(corpus.Builder):
    """The given records as a corpus, all in `split`; `deduplicate=False` keeps repeats."""

    def __init__(self, name, records, split="train", deduplicate=True):
        self.name, self.records = name, records
        self._split, self._deduplicate = split, deduplicate

    def units(self):
        return [corpus.Unit("all")]

    def extract(self, unit, skipped):
        return self.records

    def split(self, record):
        return self._split

    def dedup_key(self, record):
        return super().dedup_key(record) if self._deduplicate else None

    def description(self):
        # The records themselves: other records make another corpus, not a cached one.
        return {"records": self.records, "split": self._split, "dedup": self._deduplicate}
