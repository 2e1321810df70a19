"""The corpus format and its builds: shards, manifest, de-duplication, resumable units."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from cpt_jax.tokenization import text_id
from data_pipelines import corpus

QUIET = {"log": lambda *_: None}


class NumbersBuilder(corpus.Builder):
    """Unit i yields pairs ("q i.j", "d i.j") for j < per_unit; unit 2 repeats unit 1's
    documents (duplicates); records go to splits by j. `calls` logs each extraction (to a
    file, so that a killed subprocess leaves a trace); `stall_at` sleeps forever there."""

    name = "numbers"

    def __init__(
        self, num_units=4, per_unit=5, calls=None, stall_at=None, fail_at=None, negatives=False
    ):
        self.num_units, self.per_unit = num_units, per_unit
        self.calls, self.stall_at, self.fail_at = calls, stall_at, fail_at
        self.negatives = negatives

    def units(self):
        return [corpus.Unit(f"u{i}", i) for i in range(self.num_units)]

    def extract(self, unit, skipped):
        if self.calls:
            with open(self.calls, "a") as f:
                f.write(unit.name + "\n")
        if unit.payload == self.stall_at:
            time.sleep(600)
        if unit.payload == self.fail_at:
            raise RuntimeError("simulated crash")
        source = 1 if unit.payload == 2 else unit.payload
        skipped["odd_unit"] += unit.payload % 2
        for j in range(self.per_unit):
            record = {
                "query": f"q {unit.payload}.{j}",
                "document": f"d {source}.{j}",
                "position": j,
                "unit": unit.name,
            }
            if self.negatives:
                record["negatives"] = [f"n {unit.payload}.{j}.{k}" for k in range(2)]
            yield record

    def split(self, record):
        return {0: "validation", 1: "test"}.get(record["position"], "train")


def test_build_writes_shards_manifest_ids_and_deduplicates(tmp_path):
    manifest = corpus.build(NumbersBuilder(), str(tmp_path), records_per_shard=4, **QUIET)
    # 4 units x 5 pairs, unit 2's 5 documents duplicate unit 1's.
    assert manifest["counts"] == {"train": 9, "validation": 3, "test": 3}
    assert manifest["skipped"] == {"duplicate": 5, "odd_unit": 2}
    assert [s["count"] for s in manifest["shards"]["train"]] == [4, 4, 1]
    assert sorted(os.listdir(tmp_path)) == sorted(
        [".units", "manifest.json", "train-00000.tfrecord", "train-00001.tfrecord"]
        + ["train-00002.tfrecord", "validation-00000.tfrecord", "test-00000.tfrecord"]
    )
    assert manifest["schema"] == {
        "query": "string",
        "document": "string",
        "position": "int",
        "unit": "string",
        "query_id": "int",
        "document_id": "int",
    }
    train = corpus.read_split(str(tmp_path), "train")
    assert [(r["unit"], r["position"]) for r in train] == [
        (u, j) for u in ("u0", "u1", "u3") for j in (2, 3, 4)
    ]
    for r in train:
        assert r["query_id"] == text_id(r["query"]) and r["document_id"] == text_id(r["document"])
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk == manifest


def test_an_edited_manifest_is_an_error_not_fewer_fields(tmp_path):
    corpus.build(NumbersBuilder(), str(tmp_path), **QUIET)
    path = tmp_path / "manifest.json"
    manifest = json.loads(path.read_text())
    # The digest is the sha256 of the canonical JSON of the rest, computed here independently.
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert manifest["manifest_sha256"] == hashlib.sha256(canonical.encode()).hexdigest()
    del manifest["schema"]["unit"]  # would read every record without its "unit" field
    path.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"manifest\.json: the content does not match its"):
        corpus.read_split(str(tmp_path), "train")
    # A corpus written before the digest existed is read as it is.
    del manifest["manifest_sha256"]
    path.write_text(json.dumps(manifest))
    assert "unit" not in corpus.read_split(str(tmp_path), "train")[0]


def test_negatives_and_list_fields_round_trip(tmp_path):
    corpus.build(NumbersBuilder(num_units=1, negatives=True), str(tmp_path), **QUIET)
    (record,) = [r for r in corpus.read_split(str(tmp_path), "validation")]
    assert record["negatives"] == ["n 0.0.0", "n 0.0.1"]
    assert record["negative_ids"] == [text_id("n 0.0.0"), text_id("n 0.0.1")]


def test_a_crashed_build_resumes_without_redoing_finished_units(tmp_path):
    calls = tmp_path / "calls.txt"
    out = str(tmp_path / "corpus")
    with pytest.raises(RuntimeError, match="simulated crash"):
        corpus.build(NumbersBuilder(calls=str(calls), fail_at=2), out, **QUIET)
    assert calls.read_text().split() == ["u0", "u1", "u2"]
    assert not os.path.exists(os.path.join(out, "manifest.json"))  # not a finished corpus
    manifest = corpus.build(NumbersBuilder(calls=str(calls)), out, **QUIET)
    # u0 and u1 were finished: only u2 and u3 are extracted (again).
    assert calls.read_text().split() == ["u0", "u1", "u2", "u2", "u3"]
    reference = corpus.build(NumbersBuilder(), str(tmp_path / "reference"), **QUIET)
    assert manifest["shards"] == reference["shards"]
    # A finished corpus is not rebuilt (nothing extracted, nothing rewritten).
    mtime = os.path.getmtime(os.path.join(out, "train-00000.tfrecord"))
    assert corpus.build(NumbersBuilder(calls=str(calls)), out, **QUIET) == manifest
    assert calls.read_text().split() == ["u0", "u1", "u2", "u2", "u3"]
    assert os.path.getmtime(os.path.join(out, "train-00000.tfrecord")) == mtime


KILLED_BUILD = """
import sys
sys.path.insert(0, {tests!r})
from test_corpus import NumbersBuilder
from data_pipelines import corpus
corpus.build(NumbersBuilder(calls={calls!r}, stall_at={stall_at}), {out!r}, log=print)
"""


def read_calls(path):
    with open(path) as f:
        return f.read().split()


def test_a_killed_build_process_resumes(tmp_path):
    """SIGKILL mid-build (no cleanup runs): finished units survive, the half-done one is
    redone, and the result equals an uninterrupted build."""
    calls, out = str(tmp_path / "calls.txt"), str(tmp_path / "corpus")
    script = KILLED_BUILD.format(tests=os.path.dirname(__file__), calls=calls, out=out, stall_at=2)
    process = subprocess.Popen([sys.executable, "-c", script], cwd=os.getcwd())
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            if os.path.exists(calls) and "u2" in read_calls(calls):
                break
            time.sleep(0.1)
        else:
            pytest.fail("the build never reached unit u2")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    cache = os.path.join(out, ".units", corpus.fingerprint(NumbersBuilder()))
    assert sorted(f for f in os.listdir(cache) if f.endswith(".done.json")) == [
        "u0.done.json",
        "u1.done.json",
    ]
    manifest = corpus.build(NumbersBuilder(calls=calls), out, **QUIET)
    assert read_calls(calls) == ["u0", "u1", "u2", "u2", "u3"]
    reference = corpus.build(NumbersBuilder(), str(tmp_path / "reference"), **QUIET)
    assert manifest["shards"] == reference["shards"]


def test_a_changed_configuration_rebuilds_and_removes_stale_shards(tmp_path):
    corpus.build(NumbersBuilder(), str(tmp_path), records_per_shard=2, **QUIET)
    assert os.path.exists(tmp_path / "train-00004.tfrecord")

    class Fewer(NumbersBuilder):
        def description(self):
            return {"per_unit": 3}

    manifest = corpus.build(Fewer(per_unit=3), str(tmp_path), records_per_shard=2, **QUIET)
    assert manifest["counts"] == {"train": 3, "validation": 3, "test": 3}
    assert not os.path.exists(tmp_path / "train-00004.tfrecord")
    assert len(os.listdir(tmp_path / ".units")) == 2  # one cache per configuration


class BadRecords(NumbersBuilder):
    def __init__(self, bad):
        super().__init__(num_units=2)
        self.bad = bad

    def extract(self, unit, skipped):
        records = list(super().extract(unit, skipped))
        if unit.name == "u1":
            records[3] = self.bad(records[3])
        return records


@pytest.mark.parametrize(
    "bad, message",
    [
        (lambda r: {**r, "query": ""}, r"unit 'u1', record 3: field 'query' must be a non-empty"),
        (lambda r: {**r, "position": 1.5}, r"unit 'u1', record 3: field 'position' has unsup"),
        (lambda r: {**r, "extra": "x"}, r"unit 'u1', record 3: fields .* differ from the"),
        (lambda r: {**r, "position": "3"}, r"unit 'u1', record 3: fields .* differ from the"),
    ],
)
def test_bad_records_are_errors_that_name_the_unit_and_record(tmp_path, bad, message):
    with pytest.raises(ValueError, match=message):
        corpus.build(BadRecords(bad), str(tmp_path), **QUIET)


def test_bad_units_and_splits_are_errors(tmp_path):
    class BadName(NumbersBuilder):
        def units(self):
            return [corpus.Unit("a/b")]

    with pytest.raises(ValueError, match="'a/b' is not filesystem-safe"):
        corpus.build(BadName(), str(tmp_path), **QUIET)

    class Repeated(NumbersBuilder):
        def units(self):
            return [corpus.Unit("u0", 0), corpus.Unit("u0", 1)]

    with pytest.raises(ValueError, match=r"unique; repeated: \['u0'\]"):
        corpus.build(Repeated(), str(tmp_path), **QUIET)

    class BadSplit(NumbersBuilder):
        def split(self, record):
            return "dev"

    with pytest.raises(ValueError, match="split 'dev' is not one of"):
        corpus.build(BadSplit(), str(tmp_path / "s"), **QUIET)
    with pytest.raises(FileNotFoundError, match="no manifest"):
        corpus.read_split(str(tmp_path / "nowhere"), "train")
    corpus.build(NumbersBuilder(), str(tmp_path / "ok"), **QUIET)
    with pytest.raises(ValueError, match=r"no 'dev' split \(it has"):
        corpus.read_split(str(tmp_path / "ok"), "dev")


class TwoUnits(corpus.Builder):
    """Unit a: documents 'shared' (train) and 'a only' (train); unit b: 'shared' again, in
    the split given."""

    name = "two_units"

    def __init__(self, b_split):
        self.b_split = b_split

    def units(self):
        return [corpus.Unit("a"), corpus.Unit("b")]

    def extract(self, unit, skipped):
        if unit.name == "a":
            return [
                {"query": "qa", "document": "shared text", "split": "train"},
                {"query": "qa2", "document": "a only", "split": "train"},
            ]
        return [{"query": "qb", "document": "shared  text", "split": self.b_split}]

    def split(self, record):
        return record["split"]

    def description(self):
        return {"b_split": self.b_split}


def test_a_held_out_text_is_dropped_from_train_whatever_the_unit_order(tmp_path):
    manifest = corpus.build(TwoUnits("test"), str(tmp_path / "t"), **QUIET)
    assert manifest["counts"] == {"train": 1, "test": 1}
    assert manifest["skipped"] == {"duplicate": 1}
    (held_out,) = corpus.read_split(str(tmp_path / "t"), "test")
    assert held_out["query"] == "qb"  # the later, held-out occurrence is the one kept
    # Within one split the first occurrence wins.
    manifest = corpus.build(TwoUnits("train"), str(tmp_path / "same"), **QUIET)
    assert [r["query"] for r in corpus.read_split(str(tmp_path / "same"), "train")] == [
        "qa",
        "qa2",
    ]


def test_other_corpora_held_out_texts_are_excluded(tmp_path):
    other = str(tmp_path / "other")
    corpus.build(TwoUnits("validation"), other, **QUIET)  # 'shared text' held out there
    out = str(tmp_path / "mine")

    class Mine(TwoUnits):
        name = "mine"

    manifest = corpus.build(Mine("train"), out, exclude_held_out_of=[other], **QUIET)
    assert manifest["counts"] == {"train": 1}  # 'a only'
    assert manifest["skipped"] == {"held_out_elsewhere": 2}  # both copies of 'shared text'
    assert manifest["excluded_held_out_of"] == [
        {"corpus_dir": other, "fingerprint": corpus.read_manifest(other)["fingerprint"]}
    ]
    # The same build without the exclusion is a different corpus, not "already built".
    assert corpus.build(Mine("train"), out, **QUIET)["counts"] == {"train": 2}


def test_a_rebuild_that_dies_while_writing_shards_leaves_no_manifest(tmp_path, monkeypatch):
    corpus.build(NumbersBuilder(), str(tmp_path), records_per_shard=2, **QUIET)
    flushes = []

    def failing_flush(self):
        flushes.append(self.split)
        if len(flushes) == 2:
            raise OSError("disk full")
        original(self)

    original = corpus._ShardWriter._flush
    monkeypatch.setattr(corpus._ShardWriter, "_flush", failing_flush)

    class Changed(NumbersBuilder):
        def description(self):
            return {"changed": True}

    with pytest.raises(OSError, match="disk full"):
        corpus.build(Changed(), str(tmp_path), records_per_shard=2, **QUIET)
    # Old shards are partly overwritten: without a manifest nothing reads them as a corpus.
    with pytest.raises(FileNotFoundError, match="no manifest"):
        corpus.read_manifest(str(tmp_path))
