"""Pair corpora on disk: sharded TFRecord files per split, a manifest, resumable builds.

A corpus directory (`data/<corpus>/` by default) holds

    manifest.json                  counts, schema, shards with sha256, skip reasons, sources,
                                   and its own sha256 (an edited manifest is an error)
    train-00000.tfrecord ...       tf.train.Example records, `records_per_shard` per file
    validation-00000.tfrecord ...
    .units/<fingerprint>/          one cached extraction per unit (what makes a build resumable)

Every corpus is built the same way, by `build(builder, out_dir)` from a `Builder`, which says
what the *units* of work are (a package, an input file, a document collection) and how to turn
one unit into records. `build`:

1. extracts every unit whose cache is missing, writing it atomically (so a build killed
   mid-way restarts from the first unfinished unit: finished units are neither lost nor
   extracted twice); the cache is keyed by a fingerprint of `builder.description()`, so a
   changed configuration never reuses stale extractions;
2. merges the units in order: global de-duplication (a text held out in validation or test
   is dropped from the lower splits; otherwise the first occurrence wins), optionally
   against other corpora's held-out records too; the split of each record; the text ids
   `query_id`, `document_id` (and `negative_ids`) used to mask false negatives;
3. writes each split's shards atomically and then `manifest.json` last: a directory with a
   manifest is a finished corpus; shards left over from an earlier build are removed.

A record is a dict with `query` and `document` (non-empty strings), optionally `negatives`
(a list of strings: hard negatives of the query), and any metadata fields of type `str` or
`int`; all records of a corpus have the same fields.

Example:
  manifest = corpus.build(python_code.StdlibBuilder(), "data/stdlib_code")
  records = corpus.read_split("data/stdlib_code", "test")  # [{'query': ..., 'document': ...}]
"""

from __future__ import annotations

import abc
import collections
import glob
import gzip
import hashlib
import json
import os
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from cpt_jax import files
from cpt_jax.tokenization import text_id

SPLITS = ("train", "validation", "test")
MANIFEST = "manifest.json"
MANIFEST_DIGEST = "manifest_sha256"
FORMAT = "cpt_jax.pairs.tfrecord.v1"
DEFAULT_RECORDS_PER_SHARD = 20_000
# Bump when the merge (de-duplication, splits, ids) changes: finished corpora are re-merged.
MERGE_VERSION = 2
# Field types as written in the manifest's schema.
STRING, INT, STRING_LIST, INT_LIST = "string", "int", "string_list", "int_list"
_UNIT_NAME = re.compile(r"^[A-Za-z0-9._+-]+$")


def safe_unit_name(text: str) -> str:
    """`text` made into a unit name: characters outside `[A-Za-z0-9._+-]` become `_`, and
    it is cut to 100 characters (unit names are file names)."""
    return re.sub(r"[^A-Za-z0-9._+-]", "_", text)[:100]


class Unit(NamedTuple):
    """One resumable piece of a build: `name` is unique and filesystem-safe."""

    name: str
    payload: Any = None


class Builder(abc.ABC):
    """What a corpus is made of; `build` does the rest (caching, de-duplication, shards)."""

    name: str = "corpus"

    @abc.abstractmethod
    def units(self) -> Sequence[Unit]:
        """The units of work, in a deterministic order (cheap: no extraction here)."""

    @abc.abstractmethod
    def extract(self, unit: Unit, skipped: collections.Counter) -> Iterable[dict]:
        """The records of one unit; counts what it leaves out in `skipped[reason]`."""

    @abc.abstractmethod
    def split(self, record: dict) -> str:
        """The split of a record: one of `SPLITS`."""

    def dedup_key(self, record: dict) -> str | None:
        """Records with equal keys are duplicates (the first one is kept); None keeps all.

        Default: the whitespace-normalised document, so one text is never the positive of
        two different queries within a corpus.
        """
        return " ".join(record["document"].split())

    def description(self) -> dict:
        """What the corpus was built from (versions, hashes, rules); goes into the manifest.

        It also fingerprints the unit caches: change it when the extraction changes.
        """
        return {}


# ----------------------------------------------------------------------------- records


def _field_type(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return STRING
    if isinstance(value, int):
        return INT
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return STRING_LIST
    if isinstance(value, list) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        return INT_LIST
    return None


def _schema_of(record: dict, where: str) -> dict[str, str]:
    schema = {}
    for field in ("query", "document"):
        value = record.get(field)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(
                f"{where}: field {field!r} must be a non-empty string, got {value!r:.80}"
            )
    for field, value in record.items():
        kind = _field_type(value)
        if kind is None:
            raise ValueError(
                f"{where}: field {field!r} has unsupported type {type(value).__name__} "
                "(str, int or a list of either)"
            )
        schema[field] = kind
    if "negatives" in schema and schema["negatives"] != STRING_LIST:
        raise ValueError(f"{where}: field 'negatives' must be a list of strings")
    return schema


def _with_ids(record: dict) -> dict:
    record = dict(record)
    record["query_id"] = text_id(record["query"])
    record["document_id"] = text_id(record["document"])
    if "negatives" in record:
        record["negative_ids"] = [text_id(t) for t in record["negatives"]]
    return record


def _to_example(record: dict, schema: dict[str, str]) -> bytes:
    import tensorflow as tf

    feature = {}
    for field, kind in schema.items():
        value = record[field]
        if kind == STRING:
            feature[field] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
        elif kind == STRING_LIST:
            values = [v.encode() for v in value]
            feature[field] = tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
        elif kind == INT:
            feature[field] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        else:
            feature[field] = tf.train.Feature(int64_list=tf.train.Int64List(value=value))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


# ----------------------------------------------------------------------------- unit cache


def fingerprint(builder: Builder) -> str:
    """A short hash of the builder's class and description (keys the unit caches)."""
    described = {"builder": type(builder).__qualname__, **builder.description()}
    text = json.dumps(described, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _unit_paths(cache_dir: str, unit: Unit) -> tuple[str, str]:
    return (
        os.path.join(cache_dir, f"{unit.name}.jsonl.gz"),
        os.path.join(cache_dir, f"{unit.name}.done.json"),
    )


def _extract_unit(builder: Builder, unit: Unit, cache_dir: str) -> dict:
    """Extracts one unit into its cache (records file first, then the `done` marker)."""
    records_path, done_path = _unit_paths(cache_dir, unit)
    skipped: collections.Counter = collections.Counter()
    count = 0
    with (
        files.atomic_open(records_path, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=1) as f,
    ):
        for record in builder.extract(unit, skipped):
            _schema_of(record, f"unit {unit.name!r}, record {count}")
            f.write((json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n").encode())
            count += 1
    done = {"unit": unit.name, "records": count, "skipped": dict(sorted(skipped.items()))}
    files.write_json_atomic(done_path, done)
    return done


def _read_unit(cache_dir: str, unit: Unit) -> Iterator[dict]:
    records_path, _ = _unit_paths(cache_dir, unit)
    with gzip.open(records_path, "rt", encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


# ----------------------------------------------------------------------------- shards


class _ShardWriter:
    """Writes one split's records into `split-NNNNN.tfrecord` files, each atomically."""

    def __init__(self, out_dir: str, split: str, schema: dict[str, str], per_shard: int):
        self.out_dir, self.split, self.schema, self.per_shard = out_dir, split, schema, per_shard
        self.shards: list[dict] = []
        self._pending: list[bytes] = []

    def add(self, record: dict) -> None:
        self._pending.append(_to_example(record, self.schema))
        if len(self._pending) == self.per_shard:
            self._flush()

    def close(self) -> list[dict]:
        if self._pending or not self.shards:
            self._flush()
        return self.shards

    def _flush(self) -> None:
        import tensorflow as tf

        name = f"{self.split}-{len(self.shards):05d}.tfrecord"
        path = os.path.join(self.out_dir, name)
        tmp = files.temporary_name(path)
        digest = hashlib.sha256()
        try:
            with tf.io.TFRecordWriter(tmp) as writer:
                for example in self._pending:
                    writer.write(example)
            with open(tmp, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        self.shards.append(
            {"file": name, "count": len(self._pending), "sha256": digest.hexdigest()}
        )
        self._pending = []


# ----------------------------------------------------------------------------- build


def _key_digest(builder: Builder, record: dict) -> bytes | None:
    key = builder.dedup_key(record)
    return None if key is None else hashlib.sha1(key.encode()).digest()


def _best_splits(builder: Builder, units: Sequence[Unit], cache_dir: str) -> dict[bytes, int]:
    """For every de-duplication key: the highest split (index in `SPLITS`) it occurs in."""
    best: dict[bytes, int] = {}
    for unit in units:
        for record in _read_unit(cache_dir, unit):
            digest, split = _key_digest(builder, record), builder.split(record)
            if digest is not None and split in SPLITS:  # a bad split is reported later
                best[digest] = max(best.get(digest, 0), SPLITS.index(split))
    return best


def _held_out_keys(builder: Builder, data_dirs: Sequence[str]) -> set[bytes]:
    """The de-duplication keys (by `builder`) of other corpora's validation and test records."""
    keys: set[bytes] = set()
    for data_dir in data_dirs:
        shards = read_manifest(data_dir)["shards"]
        for split in ("validation", "test"):
            if split in shards:
                for record in read_split(data_dir, split):
                    digest = _key_digest(builder, record)
                    if digest is not None:
                        keys.add(digest)
    return keys


def build(
    builder: Builder,
    out_dir: str,
    *,
    records_per_shard: int = DEFAULT_RECORDS_PER_SHARD,
    exclude_held_out_of: Sequence[str] = (),
    log=print,
) -> dict:
    """Builds (or resumes building) `builder`'s corpus in `out_dir`; returns the manifest.

    De-duplication keeps one record per `dedup_key`, in the highest split it occurs in
    (test, then validation, then train; the first occurrence in unit order within it), so
    a text that is held out is never also trained on.

    Args:
      builder: what to build.
      out_dir: the corpus directory (created).
      records_per_shard: records per TFRecord file.
      exclude_held_out_of: other finished corpora whose validation and test records must
        not appear in this corpus's train or validation splits (same `dedup_key`); such
        records are skipped as `held_out_elsewhere`. For corpora trained in one mixture.
      log: progress lines go here (`print` by default; `lambda *_: None` silences).
    """
    if records_per_shard < 1:
        raise ValueError(f"records_per_shard must be positive, got {records_per_shard}")
    units = list(builder.units())
    names = [u.name for u in units]
    for name in names:
        if not _UNIT_NAME.match(name):
            raise ValueError(f"unit name {name!r} is not filesystem-safe ([A-Za-z0-9._+-])")
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"unit names must be unique; repeated: {duplicated}")

    exclusions = [
        {"corpus_dir": d, "fingerprint": read_manifest(d)["fingerprint"]}
        for d in exclude_held_out_of
    ]
    finished = _finished_manifest(out_dir, builder, names, records_per_shard, exclusions)
    if finished is not None:
        log(f"[{builder.name}] already built: {finished['counts']} in {out_dir}")
        return finished

    # Stage 1: extract every unit not cached yet.
    cache_dir = os.path.join(out_dir, ".units", fingerprint(builder))
    os.makedirs(cache_dir, exist_ok=True)
    done = {}
    for i, unit in enumerate(units, start=1):
        _, done_path = _unit_paths(cache_dir, unit)
        start = time.time()
        if os.path.exists(done_path):
            with open(done_path) as f:
                done[unit.name] = json.load(f)
            state = "cached"
        else:
            done[unit.name] = _extract_unit(builder, unit, cache_dir)
            state = f"{time.time() - start:.1f} s"
        log(
            f"[{builder.name}] unit {i}/{len(units)} {unit.name}: "
            f"{done[unit.name]['records']} records ({state})"
        )

    # Stage 2: merge in unit order (de-duplicate, split, ids) and write the shards. The old
    # manifest goes first: a rebuild killed while rewriting shards is not a finished corpus.
    manifest_path = os.path.join(out_dir, MANIFEST)
    if os.path.exists(manifest_path):
        os.remove(manifest_path)
    skipped: collections.Counter = collections.Counter()
    for unit_done in done.values():
        skipped.update(unit_done["skipped"])
    excluded = _held_out_keys(builder, exclude_held_out_of)
    best = _best_splits(builder, units, cache_dir)
    record_schema: dict[str, str] | None = None  # the fields every record must have
    schema: dict[str, str] = {}  # the same plus the text ids (what the shards hold)
    writers: dict[str, _ShardWriter] = {}
    written: set[bytes] = set()
    for unit in units:
        for index, record in enumerate(_read_unit(cache_dir, unit)):
            where = f"unit {unit.name!r}, record {index}"
            if record_schema is None:
                record_schema = _schema_of(record, where)
                schema = _schema_of(_with_ids(record), where)
            elif (found := _schema_of(record, where)) != record_schema:
                raise ValueError(
                    f"{where}: fields {found} differ from the corpus's first record's "
                    f"{record_schema}"
                )
            split = builder.split(record)
            if split not in SPLITS:
                raise ValueError(f"{where}: split {split!r} is not one of {SPLITS}")
            digest = _key_digest(builder, record)
            if digest is not None:
                if digest in written or SPLITS.index(split) < best[digest]:
                    skipped["duplicate"] += 1
                    continue
                if split != "test" and digest in excluded:
                    skipped["held_out_elsewhere"] += 1
                    continue
                written.add(digest)
            if split not in writers:
                writers[split] = _ShardWriter(out_dir, split, schema, records_per_shard)
            writers[split].add(_with_ids(record))
    if record_schema is None:
        raise ValueError(f"[{builder.name}] no records: every unit was empty ({dict(skipped)})")
    shards = {split: writers[split].close() for split in SPLITS if split in writers}

    # Stage 3: the manifest last, then remove shards an earlier build left behind.
    manifest = {
        "corpus": builder.name,
        "format": FORMAT,
        "schema": schema,
        "counts": {split: sum(s["count"] for s in shards[split]) for split in shards},
        "shards": shards,
        "skipped": dict(sorted(skipped.items())),
        "units": [
            {"name": u.name, "records": done[u.name]["records"], "skipped": done[u.name]["skipped"]}
            for u in units
        ],
        "fingerprint": fingerprint(builder),
        "records_per_shard": records_per_shard,
        "merge_version": MERGE_VERSION,
        "excluded_held_out_of": exclusions,
        "source": builder.description(),
    }
    manifest[MANIFEST_DIGEST] = manifest_digest(manifest)
    files.write_json_atomic(os.path.join(out_dir, MANIFEST), manifest)
    current = {s["file"] for split_shards in shards.values() for s in split_shards}
    for path in glob.glob(os.path.join(out_dir, "*.tfrecord")):
        if os.path.basename(path) not in current:
            os.remove(path)
    log(f"[{builder.name}] {manifest['counts']} -> {out_dir}")
    return manifest


def _finished_manifest(out_dir, builder, unit_names, records_per_shard, exclusions) -> dict | None:
    """The manifest of an identical finished build in `out_dir` whose shards all exist."""
    path = os.path.join(out_dir, MANIFEST)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        manifest = json.load(f)
    same = (
        manifest.get("format") == FORMAT
        and manifest.get("fingerprint") == fingerprint(builder)
        and manifest.get("records_per_shard") == records_per_shard
        and manifest.get("merge_version") == MERGE_VERSION
        and manifest.get("excluded_held_out_of") == exclusions
        and [u["name"] for u in manifest.get("units", [])] == unit_names
    )
    shards = [s for split in manifest.get("shards", {}).values() for s in split]
    if same and all(os.path.exists(os.path.join(out_dir, s["file"])) for s in shards):
        return manifest
    return None


# ----------------------------------------------------------------------------- reading


def read_manifest(data_dir: str) -> dict:
    """The manifest of a finished corpus; a clear error when there is none."""
    path = os.path.join(data_dir, MANIFEST)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path}: no manifest, so {data_dir} is not a finished corpus "
            "(build it with `python -m data_pipelines.build <corpus> --out_dir ...`)"
        )
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: invalid JSON ({e})") from e
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: expected a JSON object")
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    for field, kind in (("schema", dict), ("shards", dict), ("counts", dict)):
        if not isinstance(manifest.get(field), kind):
            raise ValueError(f"{path}: field {field!r} is missing or not a {kind.__name__}")
    # Absent in corpora built before the digest existed: those are read unchecked.
    if MANIFEST_DIGEST in manifest and manifest[MANIFEST_DIGEST] != manifest_digest(manifest):
        raise ValueError(
            f"{path}: the content does not match its {MANIFEST_DIGEST} (the file was edited "
            "or damaged: its schema or shard list cannot be trusted); rebuild the corpus"
        )
    return manifest


def manifest_digest(manifest: dict) -> str:
    """sha256 of the manifest's canonical JSON, its own digest left out: it chains the
    schema, counts and shard list to the shards' sha256s."""
    body = {k: v for k, v in manifest.items() if k != MANIFEST_DIGEST}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def split_files(data_dir: str, split: str) -> list[str]:
    """The shard paths of one split, in order (errors name the corpus and the split).

    Each shard's sha256 is checked against the manifest the first time this process lists
    it (again if the file changes): a damaged, truncated or foreign shard is an error naming
    it, not records silently lost or changed. Hashing runs at disk speed, once.
    """
    manifest = read_manifest(data_dir)
    shards = manifest["shards"]
    if not isinstance(shards, dict) or split not in shards:
        listed = sorted(shards) if isinstance(shards, dict) else shards
        raise ValueError(f"{data_dir}: no {split!r} split (it has {listed})")
    where = os.path.join(data_dir, MANIFEST)
    paths = []
    for number, shard in enumerate(shards[split]):
        name = shard.get("file") if isinstance(shard, dict) else None
        if not isinstance(name, str) or os.path.basename(name) != name or name in ("", ".", ".."):
            raise ValueError(f"{where}: shards.{split}[{number}] has no plain file name")
        paths.append(os.path.join(data_dir, name))
        _verify_shard(paths[-1], shard.get("sha256"), where)
    return paths


_VERIFIED_SHARDS: set[tuple] = set()


def _verify_shard(path: str, expected: str | None, manifest_path: str) -> None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing (listed in {manifest_path})") from None
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns, expected)
    if key in _VERIFIED_SHARDS:
        return
    actual = files.sha256_of(path)
    if actual != expected:
        raise ValueError(
            f"{path}: sha256 {actual[:16]}... is not the {str(expected)[:16]}... that "
            f"{manifest_path} records: the shard is damaged or from another build; rebuild "
            "the corpus"
        )
    _VERIFIED_SHARDS.add(key)


def feature_spec(schema: dict[str, str]) -> dict:
    """The `tf.io.parse_single_example` spec of a manifest schema (lists are ragged)."""
    import tensorflow as tf

    spec = {}
    for field, kind in schema.items():
        if kind == STRING:
            spec[field] = tf.io.FixedLenFeature([], tf.string)
        elif kind == INT:
            spec[field] = tf.io.FixedLenFeature([], tf.int64)
        elif kind == STRING_LIST:
            spec[field] = tf.io.VarLenFeature(tf.string)
        else:
            spec[field] = tf.io.VarLenFeature(tf.int64)
    return spec


def read_split(data_dir: str, split: str) -> list[dict]:
    """All records of one split as Python dicts (strings decoded), in corpus order."""
    import tensorflow as tf

    schema = read_manifest(data_dir)["schema"]
    spec = feature_spec(schema)

    def parse(raw):
        parsed = tf.io.parse_single_example(raw, spec)
        return {
            k: tf.sparse.to_dense(v) if isinstance(v, tf.SparseTensor) else v
            for k, v in parsed.items()
        }

    dataset = tf.data.TFRecordDataset(split_files(data_dir, split)).map(parse)
    records = []
    for parsed in dataset.as_numpy_iterator():
        record = {}
        for field, kind in schema.items():
            value = parsed[field]
            if kind == STRING:
                record[field] = value.decode()
            elif kind == INT:
                record[field] = int(value)
            elif kind == STRING_LIST:
                record[field] = [v.decode() for v in value]
            else:
                record[field] = [int(v) for v in value]
        records.append(record)
    return records
