"""What every supervised builder shares: the records' `split` field, the pair dedup key and
the cached description."""

from __future__ import annotations

from data_pipelines import corpus
from data_pipelines.text import normalise_whitespace


class PairsBuilder(corpus.Builder):
    """What the supervised builders share: the `split` field, pair keys, a cached description."""

    num_negatives: int = 0
    _description: dict | None = None

    def split(self, record: dict) -> str:
        return record["split"]

    def dedup_key(self, record: dict) -> str:
        """The pair, never the document alone: one passage is relevant to many queries.

        By (dataset, query id, document id) where the source has ids, else by the
        whitespace-normalised texts; the negatives' texts are part of the key either way.
        """
        if record["query_key"] and record["document_key"]:
            parts = [record["dataset"], record["query_key"], record["document_key"]]
        else:
            parts = [
                normalise_whitespace(record["query"]),
                normalise_whitespace(record["document"]),
            ]
        parts += [normalise_whitespace(text) for text in record.get("negatives", ())]
        return "\x1f".join(parts)

    def description(self) -> dict:
        # Computed once: it hashes the inputs (gigabytes for MS MARCO), and `corpus.build`
        # asks for it several times.
        if self._description is None:
            self._description = self._describe()
        return self._description

    def _describe(self) -> dict:
        raise NotImplementedError
