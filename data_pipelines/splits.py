"""Splits by hash: a record's split is a pure function of one of its keys (a module, a source
package, a document id), so that everything sharing the key lands in one split, whatever the
order or the subset of a build.

    split_by_hash("node-lodash")        # "test": bucket 0 of 10
    hash_bucket("json", 100)            # the stdlib corpus's finer rule (python_code)

Bucket 0 of 10 is the test split, reserved for held-out evaluation in the Debian corpora
(docs/design.md, held-out data); bucket 1 is validation.
"""

from __future__ import annotations

import hashlib


def hash_bucket(key: str, buckets: int) -> int:
    """`int(sha1(key).hexdigest(), 16) % buckets` (the key UTF-8 encoded)."""
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest(), 16) % buckets


def split_by_hash(key: str) -> str:
    """`test` for bucket 0 of 10, `validation` for bucket 1, else `train`."""
    bucket = hash_bucket(key, 10)
    return "test" if bucket == 0 else "validation" if bucket == 1 else "train"


def rule_text(key: str) -> str:
    """The manifest's words for `split_by_hash` over the field `key`."""
    return f"int(sha1({key}).hexdigest(), 16) % 10: 0 test, 1 validation"
