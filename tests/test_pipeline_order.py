"""The step-indexed batch order, mixtures (mixed and single-task batches), hard negatives."""

import os

import numpy as np
import pytest
import seqio
from corpora import GivenRecords

from cpt_jax.tokenization import PairTokenizer, text_id
from data_pipelines import corpus, pipeline, tasks
from data_pipelines.pipeline import StepIndexedOrder

QUIET = {"log": lambda *_: None}
LENGTHS = {"inputs": 10, "targets": 16}


def test_one_task_epochs_are_permutations_and_batches_are_stream_slices():
    order = StepIndexedOrder([10], global_batch=4, seed=3)
    stream = order.stream(0, 0, 40)
    for epoch in range(4):
        assert sorted(stream[epoch * 10 : (epoch + 1) * 10]) == list(range(10))
    assert not np.array_equal(stream[:10], stream[10:20])  # epochs are reshuffled
    for step in range(10):  # batches straddle epoch boundaries (10 is not a multiple of 4)
        tasks_, examples = order.batch(step)
        assert (tasks_ == 0).all()
        np.testing.assert_array_equal(examples, stream[step * 4 : (step + 1) * 4])
    # Any step is computed directly (resume): a fresh order agrees at step 1,000,000.
    far = StepIndexedOrder([10], global_batch=4, seed=3).batch(1_000_000)[1]
    np.testing.assert_array_equal(far, order.stream(0, 4_000_000, 4_000_004))
    other = StepIndexedOrder([10], global_batch=4, seed=4)
    assert not np.array_equal(other.stream(0, 0, 10), stream[:10])
    unshuffled = StepIndexedOrder([10], global_batch=4, shuffle=False)
    np.testing.assert_array_equal(unshuffled.stream(0, 8, 12), [8, 9, 0, 1])


def test_mixed_batches_give_each_task_its_share_to_within_one_row():
    sizes, rates, g = [50, 7, 20], [0.5, 0.2, 0.3], 16
    order = StepIndexedOrder(sizes, rates, global_batch=g, seed=0)
    taken = np.zeros(3, dtype=int)
    for step in range(200):
        tasks_, examples = order.batch(step)
        assert len(tasks_) == g
        counts = np.bincount(tasks_, minlength=3)
        # Each task's rows are the next rows of its own stream (in some order).
        for t in range(3):
            expected = order.stream(t, taken[t], taken[t] + counts[t])
            assert sorted(examples[tasks_ == t]) == sorted(expected)
        taken += counts
        assert np.all(np.abs(taken - (step + 1) * g * np.array(rates)) <= 1)
    assert order.batch(5)[0].tolist() != sorted(order.batch(5)[0].tolist())  # rows permuted


def test_single_task_batches_follow_the_rates_and_continue_each_stream():
    sizes, rates, g = [30, 30], [0.8, 0.2], 8
    order = StepIndexedOrder(sizes, rates, global_batch=g, seed=1, single_task_batches=True)
    served = [[], []]
    for step in range(5000):
        tasks_, examples = order.batch(step)
        (task,) = set(tasks_.tolist())
        served[task].append(examples)
    assert abs(len(served[0]) / 5000 - 0.8) < 0.02
    for t in range(2):
        joined = np.concatenate(served[t])
        np.testing.assert_array_equal(joined, order.stream(t, 0, len(joined)))
    # Choices cross the 4,096-step blocks consistently with a fresh order (resume).
    fresh = StepIndexedOrder(sizes, rates, global_batch=g, seed=1, single_task_batches=True)
    for step in (4095, 4096, 4999):
        np.testing.assert_array_equal(fresh.batch(step)[1], order.batch(step)[1])


def test_order_rejects_bad_arguments():
    with pytest.raises(ValueError, match="every task needs examples"):
        StepIndexedOrder([5, 0], global_batch=2)
    with pytest.raises(ValueError, match="rates"):
        StepIndexedOrder([5, 5], [1.0], global_batch=2)
    with pytest.raises(ValueError, match="global_batch must be positive"):
        StepIndexedOrder([5], global_batch=0)


def test_grouped_epochs_keep_each_group_in_blocks_of_one_batch():
    groups = np.repeat([0, 1, 2, 3], [23, 9, 4, 16])  # 52 examples, sizes not multiples of 8
    order = StepIndexedOrder([52], global_batch=8, seed=5, groups=[groups])
    for epoch in range(3):
        perm = order.stream(0, epoch * 52, (epoch + 1) * 52)
        assert sorted(perm) == list(range(52))  # still a permutation of the task
        # Cut into runs of one group: each group appears as ceil(size / 8) runs (its blocks),
        # none longer than a batch, unless two blocks of a group happen to be adjacent.
        runs = np.split(perm, np.flatnonzero(np.diff(groups[perm])) + 1)
        for run in runs:
            assert len(set(groups[run])) == 1
        for group, size in enumerate([23, 9, 4, 16]):
            members = sum(len(r) for r in runs if groups[r[0]] == group)
            assert members == size
            assert len([r for r in runs if groups[r[0]] == group]) <= -(-size // 8)
    assert not np.array_equal(order.stream(0, 0, 52), order.stream(0, 52, 104))
    # With random groups a batch holds many groups; grouped, at most two or three.
    plain = StepIndexedOrder([52], global_batch=8, seed=5)
    assert max(len(set(groups[plain.batch(k)[1]])) for k in range(20)) >= 3
    assert max(len(set(groups[order.batch(k)[1]])) for k in range(20)) <= 3
    # Resume: a fresh order computes any step directly.
    fresh = StepIndexedOrder([52], global_batch=8, seed=5, groups=[groups])
    np.testing.assert_array_equal(fresh.batch(1234)[1], order.batch(1234)[1])


def test_grouped_orders_reject_mismatched_groups():
    with pytest.raises(ValueError, match=r"task 0: groups of shape \(3,\), expected \(4,\)"):
        StepIndexedOrder([4], global_batch=2, groups=[np.zeros(3, int)])
    with pytest.raises(ValueError, match="groups for 1 tasks, but 2 tasks"):
        StepIndexedOrder([4, 4], global_batch=2, groups=[np.zeros(4, int)])
    with pytest.raises(ValueError, match="groups need shuffle=True"):
        StepIndexedOrder([4], global_batch=2, shuffle=False, groups=[np.zeros(4, int)])


# -- through SeqIO -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_corpora(tmp_path_factory, stdlib_corpus):
    root = tmp_path_factory.mktemp("mixture")
    code = [{"query": f"sort list {i}", "document": f"def f{i}(x): return x"} for i in range(40)]
    text = [
        {
            "query": f"a sentence number {i}",
            "document": f"the next sentence {i}",
            "negatives": [f"unrelated words {i} {k}" for k in range(3 if i else 1)],
        }
        for i in range(10)
    ]
    dirs = {"code": str(root / "code"), "text": str(root / "text")}
    corpus.build(GivenRecords("code", code), dirs["code"], **QUIET)
    corpus.build(
        GivenRecords("text", [r for r in text if r["query"] != "a sentence number 0"]),
        dirs["text"],
        **QUIET,
    )
    corpus.build(GivenRecords("text_short", text), str(root / "text_short"), **QUIET)
    dirs["text_short"] = str(root / "text_short")
    return {**dirs, "vocabulary": stdlib_corpus["vocabulary"]}


def ids_of(data_dir):
    return {r["document_id"] for r in corpus.read_split(data_dir, "train")}


def batches(name, n, **kw):
    iterator = pipeline.pair_batches(name, "train", sequence_lengths=LENGTHS, **kw)
    return [next(iterator) for _ in range(n)]


def test_mixture_rates_follow_the_corpus_sizes(two_corpora):
    dirs = [two_corpora["code"], two_corpora["text"]]
    np.testing.assert_allclose(tasks.mixture_rates(dirs), [40 / 49, 9 / 49])
    np.testing.assert_allclose(
        tasks.mixture_rates(dirs, temperature=2.0), np.sqrt([40, 9]) / np.sqrt([40, 9]).sum()
    )


def test_mixture_batches_mix_both_corpora_and_reshard_exactly(two_corpora):
    dirs = [two_corpora["code"], two_corpora["text"]]
    tasks.register_pairs_mixture("test_mix", dirs, two_corpora["vocabulary"], rates=[0.5, 0.5])
    code_ids, text_ids = ids_of(dirs[0]), ids_of(dirs[1])
    whole = batches("test_mix", 6, batch_size=8, seed=2)
    for batch in whole:
        ids = set(batch["document_ids"].tolist())
        assert len(ids & code_ids) == 4 and len(ids & text_ids) == 4
    halves = [
        batches("test_mix", 6, batch_size=4, seed=2, shard_info=seqio.ShardInfo(i, 2))
        for i in range(2)
    ]
    for step in range(6):
        for key in whole[step]:
            joined = np.concatenate([halves[0][step][key], halves[1][step][key]])
            np.testing.assert_array_equal(joined, whole[step][key])
    resumed = batches("test_mix", 2, batch_size=8, seed=2, start_step=4)
    np.testing.assert_array_equal(resumed[1]["queries"], whole[5]["queries"])


def test_single_task_batches_come_from_one_corpus(two_corpora):
    dirs = [two_corpora["code"], two_corpora["text"]]
    tasks.register_pairs_mixture("test_mix", dirs, two_corpora["vocabulary"], rates=[0.5, 0.5])
    code_ids, text_ids = ids_of(dirs[0]), ids_of(dirs[1])
    sources = []
    for batch in batches("test_mix", 12, batch_size=4, single_task_batches=True):
        ids = set(batch["document_ids"].tolist())
        assert ids <= code_ids or ids <= text_ids
        sources.append(ids <= code_ids)
    assert 0 < sum(sources) < 12


def test_hard_negatives_are_tokenised_like_documents(two_corpora):
    tasks.register_pairs_task(
        "test_negatives", two_corpora["text"], two_corpora["vocabulary"], num_negatives=2
    )
    records = {r["query_id"]: r for r in corpus.read_split(two_corpora["text"], "train")}
    tokenizer = PairTokenizer.from_file(two_corpora["vocabulary"])
    (batch,) = batches("test_negatives", 1, batch_size=3, num_negatives=2)
    assert batch["negatives"].shape == (3, 2, LENGTHS["targets"])
    for row, query_id in enumerate(batch["query_ids"]):
        negatives = records[int(query_id)]["negatives"][:2]
        expected = tokenizer.encode(negatives, "document", LENGTHS["targets"])
        np.testing.assert_array_equal(batch["negatives"][row], expected)
        assert batch["negative_ids"][row].tolist() == [text_id(t) for t in negatives]
    # SeqIO's path (in-graph tokenisation, the feature converter) gives the same arrays.
    ours = pipeline.tokenized_split("test_negatives", "train", LENGTHS, 2, cache=False)
    theirs = pipeline.seqio_features("test_negatives", "train", LENGTHS, 2)
    assert set(ours) == set(theirs)
    for key in ours:
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)


def test_too_few_negatives_is_an_error_naming_the_corpus(two_corpora):
    tasks.register_pairs_task(
        "test_short_negatives",
        two_corpora["text_short"],
        two_corpora["vocabulary"],
        num_negatives=2,
    )
    with pytest.raises(ValueError, match="text_short: a record has fewer than 2 negatives"):
        batches("test_short_negatives", 1, batch_size=2, num_negatives=2)
    with pytest.raises(Exception, match="text_short: a record has fewer than 2 negatives"):
        pipeline.seqio_features("test_short_negatives", "train", LENGTHS, 2)


def test_tokenised_splits_are_cached_beside_the_corpus_and_keyed(two_corpora, monkeypatch):
    tasks.register_pairs_task("test_cache", two_corpora["code"], two_corpora["vocabulary"])
    fresh = pipeline.tokenized_split("test_cache", "train", LENGTHS, cache=False)
    first = pipeline.tokenized_split("test_cache", "train", LENGTHS)
    calls = []
    monkeypatch.setattr(pipeline, "_tokenize", lambda *a: calls.append(a) or fresh)
    again = pipeline.tokenized_split("test_cache", "train", LENGTHS)
    assert calls == []  # read back, not tokenised
    for key in fresh:
        np.testing.assert_array_equal(first[key], fresh[key])
        np.testing.assert_array_equal(again[key], fresh[key])
    pipeline.tokenized_split("test_cache", "train", {"inputs": 10, "targets": 20})
    assert len(calls) == 1  # other lengths: another key, tokenised again
    cached = os.listdir(os.path.join(two_corpora["code"], ".tokenized"))
    assert len(cached) == 2 and all(name.startswith("train-") for name in cached)


def test_corpora_with_the_same_directory_name_are_an_error(two_corpora, tmp_path):
    clash = str(tmp_path / "elsewhere" / "code")
    corpus.build(GivenRecords("code", [{"query": "a b c", "document": "d e f"}]), clash, **QUIET)
    with pytest.raises(ValueError, match=r"share task names \['pairs_code'\]"):
        tasks.register_pairs_mixture("t", [two_corpora["code"], clash], two_corpora["vocabulary"])


def test_batches_grouped_by_a_corpus_field(two_corpora, tmp_path):
    records = [
        {"query": f"do thing {i}", "document": f"def g{i}(): pass", "package": f"pkg{i % 3}"}
        for i in range(30)
    ]
    corpus.build(GivenRecords("grouped", records), str(tmp_path / "grouped"), **QUIET)
    tasks.register_pairs_task("test_grouped", str(tmp_path / "grouped"), two_corpora["vocabulary"])
    package_of = {
        r["document_id"]: r["package"]
        for r in corpus.read_split(str(tmp_path / "grouped"), "train")
    }
    for batch in batches("test_grouped", 6, batch_size=5, group_field="package"):
        # Each package has 10 pairs, two blocks of 5: every batch is one package.
        assert len({package_of[int(i)] for i in batch["document_ids"]}) == 1
    with pytest.raises(ValueError, match=r"grouped: no field 'module' to group batches by"):
        batches("test_grouped", 1, batch_size=5, group_field="module")
