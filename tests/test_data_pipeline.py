"""Stdlib pair extraction, the corpus build, the SeqIO task and deterministic batches."""

import os
import textwrap
from collections import Counter

import numpy as np
import pytest
import seqio
from corpora import GivenRecords

from cpt_jax.tokenization import PairTokenizer, text_id
from data_pipelines import corpus, pipeline, python_code, tasks

SOURCE = textwrap.dedent(
    '''
    import functools


    @functools.lru_cache
    def parse_header(line, sep=":"):
        """Split a header line into its name and value.

        More details that are not part of the query.
        """
        # split once only
        name, _, value = line.partition(sep)
        name = name.strip()
        return name, value.strip()


    def short(x):
        """Return the input unchanged always."""
        return x


    def tiny_doc(x):
        """Too short."""
        y = x + 1
        z = y * 2
        return z


    def test_something():
        """This is a test function to skip."""
        a = 1
        b = 2
        assert a < b


    class Parser:
        def __repr__(self):
            """Represent the parser as a string."""
            a = 1
            b = 2
            return str(a + b)

        async def feed(self, data):
            """Feed more bytes into the parser buffer."""
            self.buffer += data
            await self.flush()
            return len(data)

        def undocumented(self):
            a = 1
            b = 2
            return a + b


    def outer():
        """Outer function with a nested one inside."""
        def inner():
            """Nested functions are part of their parent."""
            p = 1
            q = 2
            return p + q
        return inner()
    '''
)


def test_extract_pairs_applies_the_codesearchnet_filters():
    skipped = Counter()
    records = python_code.extract_pairs(SOURCE, path="m.py", module="m", skipped=skipped)
    names = [r["name"] for r in records]
    assert names == ["parse_header", "Parser.feed", "outer"]
    assert skipped == Counter(
        short_body=1, short_docstring=1, test_function=1, dunder_method=1, no_docstring=1
    )
    header = records[0]
    assert header["query"] == "Split a header line into its name and value."
    assert header["document"].startswith('@functools.lru_cache\ndef parse_header(line, sep=":"):\n')
    assert '"""' not in header["document"] and "# split once only" in header["document"]
    assert "# split once only" not in header["code_no_comments"]
    assert "name, _, value = line.partition(sep)" in header["code_no_comments"]
    assert records[1]["document"].startswith("async def feed(self, data):\n    self.buffer")
    assert "def inner" in records[2]["document"]  # nested function kept inside its parent


def test_unparsable_source_is_skipped_and_counted():
    skipped = Counter()
    assert (
        python_code.extract_pairs("def f(:\n", path="bad.py", module="bad", skipped=skipped) == []
    )
    assert skipped["unparsable_file"] == 1


def test_stdlib_builder_counts_non_utf8_files_and_deduplicates(tmp_path):
    sources = {
        "a.py": SOURCE.encode(),
        "b.py": SOURCE.encode(),  # the same functions again: duplicates
        "c.py": b"def f():\n    '''caf\xe9 is not utf-8 here at all'''\n",
        "d.py": b"def broken(:\n",
    }
    root = tmp_path / "lib"
    root.mkdir()
    for name, data in sources.items():
        (root / name).write_bytes(data)
    manifest = python_code.build_stdlib_corpus(str(tmp_path / "out"), str(root), log=print)
    assert sum(manifest["counts"].values()) == 3
    assert manifest["skipped"]["duplicate"] == 3
    assert manifest["skipped"]["non_utf8_file"] == 1
    assert manifest["skipped"]["unparsable_file"] == 1
    assert [u["name"] for u in manifest["units"]] == ["a", "b", "c", "d"]
    records = [
        r for split in manifest["counts"] for r in corpus.read_split(str(tmp_path / "out"), split)
    ]
    assert sorted(r["name"] for r in records) == ["Parser.feed", "outer", "parse_header"]
    for r in records:
        assert r["query_id"] == text_id(r["query"]) and r["document_id"] == text_id(r["document"])
    # Modules a and b fall in different splits: the held-out copy is the one kept.
    assert (python_code.split_for_module("a"), python_code.split_for_module("b")) == (
        "train",
        "test",
    )
    assert {r["path"] for r in records} == {"b.py"}
    assert manifest["counts"] == {"test": 3}


def test_stdlib_corpus_is_split_by_module_and_large_enough(stdlib_corpus):
    manifest = stdlib_corpus["manifest"]
    counts = manifest["counts"]
    assert counts["train"] > 1500 and counts["validation"] > 100
    assert counts["test"] >= 1000  # each test query is ranked against 1,000 candidates
    modules = {
        split: {r["module"] for r in corpus.read_split(stdlib_corpus["data_dir"], split)}
        for split in corpus.SPLITS
    }
    assert not modules["train"] & modules["test"]
    assert not modules["train"] & modules["validation"]
    assert not modules["validation"] & modules["test"]
    all_codes = []
    for split in corpus.SPLITS:
        records = corpus.read_split(stdlib_corpus["data_dir"], split)
        assert len(records) == counts[split]
        assert all(python_code.split_for_module(r["module"]) == split for r in records)
        assert not any("/test" in r["path"] or r["path"].startswith("test") for r in records)
        all_codes += [" ".join(r["document"].split()) for r in records]
    assert len(all_codes) == len(set(all_codes))


def test_stdlib_build_is_deterministic(stdlib_corpus, tmp_path):
    again = python_code.build_stdlib_corpus(str(tmp_path))
    assert again["shards"] == stdlib_corpus["manifest"]["shards"]  # names, counts, sha256


def test_load_pairs_errors_name_file_line_and_field(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"query": "q", "document": "c"}\n{"query": "q"}\n')
    with pytest.raises(ValueError, match=r"train\.jsonl:2: missing field 'document'"):
        pipeline.load_pairs(str(tmp_path), "train")
    (tmp_path / "test.jsonl").write_text('{"query": "q", "document": "c"}\n{oops\n')
    with pytest.raises(ValueError, match=r"test\.jsonl:2: invalid JSON"):
        pipeline.load_pairs(str(tmp_path), "test")
    with pytest.raises(FileNotFoundError, match=r"validation\.jsonl: no such split file"):
        pipeline.load_pairs(str(tmp_path), "validation")


# -- SeqIO ------------------------------------------------------------------------------------
LENGTHS = {"inputs": 12, "targets": 40}


@pytest.fixture(scope="module")
def task(stdlib_corpus):
    return tasks.register_pairs_task(
        "test_stdlib_pairs", stdlib_corpus["data_dir"], stdlib_corpus["vocabulary"]
    )


def one_epoch(shard_index=0, num_shards=1, batch_size=8, **kw):
    return list(
        pipeline.pair_batches(
            "test_stdlib_pairs",
            "validation",
            batch_size=batch_size,
            sequence_lengths=LENGTHS,
            shard_info=seqio.ShardInfo(shard_index, num_shards),
            repeat=False,
            **kw,
        )
    )


def test_seqio_path_matches_the_inference_tokenizer(task, stdlib_corpus):
    """SeqIO (the task's in-graph tokenisation and `PairFeatureConverter`) gives the rows
    that the inference tokenizer gives, text by text, and so the batches the pipeline
    serves (which it encodes with that tokenizer)."""
    tokenizer = PairTokenizer.from_file(stdlib_corpus["vocabulary"])
    records = corpus.read_split(stdlib_corpus["data_dir"], "validation")
    by_id = {r["document_id"]: r for r in records}
    through_seqio = pipeline.seqio_features("test_stdlib_pairs", "validation", LENGTHS)
    served = one_epoch(shuffle=False, batch_size=len(records))
    assert len(served) == 1
    for key, value in through_seqio.items():
        np.testing.assert_array_equal(served[0][key], value, err_msg=key)
    checked = truncated = 0
    for batch in [through_seqio]:
        for row in range(len(batch["documents"])):
            record = by_id[int(batch["document_ids"][row])]
            expected_q = tokenizer.encode([record["query"]], "query", LENGTHS["inputs"])[0]
            expected_d = tokenizer.encode([record["document"]], "document", LENGTHS["targets"])[0]
            np.testing.assert_array_equal(batch["queries"][row], expected_q)
            np.testing.assert_array_equal(batch["documents"][row], expected_d)
            assert int(batch["query_ids"][row]) == text_id(record["query"])
            truncated += int(expected_d[-1] != 0)
            checked += 1
    assert checked > 300 and truncated > 100  # long code is truncated, and still equal


def test_batches_are_deterministic_and_resume_at_a_step(task):
    run = lambda start: pipeline.pair_batches(
        "test_stdlib_pairs",
        "train",
        batch_size=8,
        sequence_lengths=LENGTHS,
        seed=3,
        start_step=start,
    )
    first = run(0)
    from_zero = [next(first) for _ in range(7)]
    again = run(0)
    resumed = run(4)
    for k in range(7):
        np.testing.assert_array_equal(from_zero[k]["documents"], next(again)["documents"])
    for k in range(4, 7):
        np.testing.assert_array_equal(from_zero[k]["documents"], next(resumed)["documents"])
    other_seed = next(
        pipeline.pair_batches(
            "test_stdlib_pairs", "train", batch_size=8, sequence_lengths=LENGTHS, seed=4
        )
    )
    assert not np.array_equal(other_seed["documents"], from_zero[0]["documents"])


def test_resume_across_an_epoch_boundary(task):
    run = lambda start: pipeline.pair_batches(
        "test_stdlib_pairs",
        "validation",
        batch_size=16,
        sequence_lengths=LENGTHS,
        seed=1,
        start_step=start,
    )
    epoch = one_epoch(batch_size=16)
    assert len(epoch) < 40  # so batches 38.. are in the second epoch
    first, resumed = run(0), run(38)
    from_zero = [next(first) for _ in range(42)]
    for k in range(38, 42):
        batch = next(resumed)
        for key in ("queries", "documents", "query_ids", "document_ids"):
            np.testing.assert_array_equal(from_zero[k][key], batch[key])
    # Epochs are reshuffled: the second epoch's first batch is not the first epoch's.
    n = len(epoch)
    assert not np.array_equal(from_zero[0]["document_ids"], from_zero[n]["document_ids"])


def test_short_and_long_texts_match_the_inference_tokenizer(tmp_path, stdlib_corpus):
    long_code = corpus.read_split(stdlib_corpus["data_dir"], "test")[0]["document"] * 5
    texts = [("a", "x = 1"), ("Sort a list.", "b"), ("c", "d"), ("Parse it all " * 50, long_code)]
    records = [{"query": q, "document": d} for q, d in texts]
    builder = GivenRecords("list", records, split="validation", deduplicate=False)
    corpus.build(builder, str(tmp_path), log=lambda *_: None)
    tasks.register_pairs_task("test_edge_pairs", str(tmp_path), stdlib_corpus["vocabulary"])
    (batch,) = pipeline.pair_batches(
        "test_edge_pairs",
        "validation",
        batch_size=4,
        sequence_lengths=LENGTHS,
        shuffle=False,
        repeat=False,
    )
    tokenizer = PairTokenizer.from_file(stdlib_corpus["vocabulary"])
    queries, codes = zip(*texts)
    np.testing.assert_array_equal(
        batch["queries"], tokenizer.encode(queries, "query", LENGTHS["inputs"])
    )
    np.testing.assert_array_equal(
        batch["documents"], tokenizer.encode(codes, "document", LENGTHS["targets"])
    )
    assert list(batch["document_ids"]) == [text_id(c) for c in codes]
    assert batch["queries"][3, -1] == tokenizer.delimiter_ids("query")[1]  # truncated
    # Re-registering the same name is fine (the launcher and tests both do it).
    tasks.register_pairs_task("test_edge_pairs", str(tmp_path), stdlib_corpus["vocabulary"])


def test_host_shards_concatenate_to_the_same_global_batches(task):
    """2 or 4 hosts' slices, concatenated in shard order, are the 1-host global batches:
    re-sharding a run changes who reads a row, not what each step trains on."""
    whole = one_epoch(batch_size=8)
    assert len(whole) > 3
    for num_shards in (2, 4):
        shards = [one_epoch(s, num_shards, batch_size=8 // num_shards) for s in range(num_shards)]
        assert all(len(batches) == len(whole) for batches in shards)
        for step, batch in enumerate(whole):
            for key, value in batch.items():
                joined = np.concatenate([batches[step][key] for batches in shards])
                np.testing.assert_array_equal(joined, value, err_msg=f"{num_shards} {key}")
    # Different hosts see different rows of every batch.
    first, second = one_epoch(0, 2, batch_size=4), one_epoch(1, 2, batch_size=4)
    assert not set(first[0]["document_ids"]) & set(second[0]["document_ids"])
    with pytest.raises(ValueError, match="shard index 2 must be in"):
        one_epoch(2, 2, batch_size=4)


def test_register_task_errors(tmp_path, stdlib_corpus):
    with pytest.raises(FileNotFoundError, match="none.model: vocabulary not found"):
        tasks.register_pairs_task("t_err", str(tmp_path), str(tmp_path / "none.model"))
    with pytest.raises(FileNotFoundError, match="no manifest, so .* is not a finished corpus"):
        tasks.register_pairs_task("t_err", str(tmp_path), stdlib_corpus["vocabulary"])
    with pytest.raises(ValueError, match="num_negatives=2 but the corpus has no 'negatives'"):
        tasks.register_pairs_task(
            "t_err", stdlib_corpus["data_dir"], stdlib_corpus["vocabulary"], num_negatives=2
        )


def test_docstring_sharing_a_line_with_code_is_skipped():
    source = 'def f(a):\n    "Compute the thing here."; b = a\n    c = b\n    d = c\n    return d\n'
    skipped = Counter()
    assert python_code.extract_pairs(source, path="x.py", module="x", skipped=skipped) == []
    assert skipped == Counter(inline_docstring=1)


def test_stdlib_sources_exclude_tests_and_vendored_code():
    paths = [path for path, _ in python_code.iter_stdlib_sources()]
    assert len(paths) > 300 and len(set(paths)) == len(paths)
    for path in paths:
        parts = path.split(os.sep)
        assert not set(parts) & {"test", "tests", "idle_test", "_vendor", "_bundled"}, path
        assert not parts[-1].startswith("test_") and "site-packages" not in parts, path
    assert "json/decoder.py" in paths and "asyncio/events.py" in paths
