"""WiSE-FT weight interpolation: the pure mixture against numpy, and the CLI on model
directories (the mixture restored, embeddings at the two ends, provenance, refusals)."""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cpt_jax import checkpoints, pretrained, weight_interpolation
from cpt_jax.embed import Embedder
from cpt_jax.models import Encoder, EncoderConfig
from cpt_jax.tokenization import load_tokenizer

CONFIG = EncoderConfig(
    vocab_size=1024, num_layers=1, d_model=16, num_heads=2, d_ff=32, max_length=32
)
TEXTS = ["sort a list in place", "def f(a):\n    return a + 1"]


def test_interpolate_equals_the_float64_mixture_leaf_by_leaf():
    rng = np.random.default_rng(0)
    start = {"a": rng.normal(size=(3, 4)).astype(np.float32), "b": {"c": np.float32(2.0)}}
    tuned = {"a": rng.normal(size=(3, 4)).astype(np.float32), "b": {"c": np.float32(-1.0)}}
    for alpha in (0.0, 0.3, 1.0):
        mixed = weight_interpolation.interpolate(start, tuned, alpha)
        want = (1 - alpha) * start["a"].astype(np.float64) + alpha * tuned["a"]
        np.testing.assert_allclose(mixed["a"], want, rtol=0, atol=1e-6)
        assert mixed["a"].dtype == np.float32
        assert float(mixed["b"]["c"]) == pytest.approx(2.0 - 3.0 * alpha)
    np.testing.assert_array_equal(
        weight_interpolation.interpolate(start, tuned, 0.0)["a"], start["a"]
    )
    np.testing.assert_array_equal(
        weight_interpolation.interpolate(start, tuned, 1.0)["a"], tuned["a"]
    )


def test_interpolate_refuses_mismatched_trees_and_alpha():
    start = {"a": np.zeros((2, 2)), "b": np.zeros(3)}
    with pytest.raises(ValueError, match=r"fine-tuned one: \['c'\]; only in the start: \['b'\]$"):
        weight_interpolation.interpolate(start, {"a": np.zeros((2, 2)), "c": np.zeros(3)}, 0.5)
    with pytest.raises(ValueError, match=r"parameter \['b'\]: shape \(3,\) in the start, \(4,\)"):
        weight_interpolation.interpolate(start, {"a": np.zeros((2, 2)), "b": np.zeros(4)}, 0.5)
    for alpha in (-0.1, 1.5):
        with pytest.raises(ValueError, match="alpha must be in"):
            weight_interpolation.interpolate(start, start, alpha)


def _model_dir(path, vocabulary, seed, config=CONFIG, source=None):
    """A cpt-jax model directory of randomly initialised weights."""
    boxed = Encoder(config).init(jax.random.key(seed), jnp.zeros((1, 8), jnp.int32))
    params = jax.tree.map(np.asarray, nn.unbox(boxed)["params"])
    model = pretrained.PretrainedModel(config, params, load_tokenizer(vocabulary), source or {})
    pretrained.write_model_dir(model, str(path), {"queries": 16, "documents": 32})
    return str(path), params


@pytest.fixture
def start_and_tuned(tmp_path, stdlib_corpus):
    vocabulary = stdlib_corpus["vocabulary"]
    start, start_params = _model_dir(tmp_path / "start", vocabulary, seed=0)
    tuned, tuned_params = _model_dir(
        tmp_path / "tuned", vocabulary, seed=1, source={"init_from": start}
    )
    return start, start_params, tuned, tuned_params


def test_cli_writes_the_mixture_as_a_model_directory(start_and_tuned, tmp_path, capsys):
    start, start_params, tuned, tuned_params = start_and_tuned
    output = str(tmp_path / "mixed")
    # No --start: the run's recorded INIT_FROM is the start.
    assert (
        weight_interpolation.main(["--checkpoint", tuned, "--alpha", "0.25", "--output", output])
        == 0
    )
    assert "wrote" in capsys.readouterr().out
    restored = Embedder.from_checkpoint(output).params
    want = jax.tree.map(
        lambda a, b: 0.75 * np.float64(a) + 0.25 * np.float64(b), start_params, tuned_params
    )
    for got, expected in zip(jax.tree.leaves(restored), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(got), expected, rtol=0, atol=1e-6)
    meta = json.loads((tmp_path / "mixed" / checkpoints.MODEL_METADATA_FILE).read_text())
    record = meta["weight_interpolation"]
    assert record["alpha"] == 0.25 and record["finetuned"]["step"] == 0
    assert record["start"]["init_from"] == start and meta["model_config"] == CONFIG.to_dict()
    assert checkpoints.latest_saved_step(output) == 0

    # The two ends embed exactly as the models they are (one with --start and --step given).
    for alpha, same_as, given in (
        ("1", tuned, []),
        ("0", start, ["--start", start, "--step", "0"]),
    ):
        end = str(tmp_path / f"end_{alpha}")
        args = ["--checkpoint", tuned, "--alpha", alpha, "--output", end, *given]
        assert weight_interpolation.main(args) == 0
        for kind in ("query", "document"):
            np.testing.assert_array_equal(
                Embedder.from_checkpoint(end).encode(TEXTS, kind),
                Embedder.from_checkpoint(same_as).encode(TEXTS, kind),
            )


def test_cli_refusals_name_the_problem(start_and_tuned, tmp_path, stdlib_corpus, capsys):
    start, _, tuned, _ = start_and_tuned

    def error(*args):
        assert weight_interpolation.main(["--checkpoint", tuned, *args]) == 2
        return capsys.readouterr().err

    out = str(tmp_path / "out")
    assert "alpha must be in [0, 1]" in error("--alpha", "1.2", "--output", out)
    assert "already holds a model" in error("--alpha", "0.5", "--output", start)
    (tmp_path / "half" / checkpoints.CHECKPOINT_SUBDIR).mkdir(parents=True)
    assert "an unfinished output" in error("--alpha", "0.5", "--output", str(tmp_path / "half"))
    assert "is the fine-tuned model itself" in error("--alpha", "0.5", "--output", tuned)
    # A run without a recorded INIT_FROM needs --start.
    assert (
        weight_interpolation.main(["--checkpoint", start, "--alpha", "0.5", "--output", out]) == 2
    )
    assert "records no INIT_FROM" in capsys.readouterr().err
    wider, _ = _model_dir(
        tmp_path / "wider",
        stdlib_corpus["vocabulary"],
        2,
        EncoderConfig(**{**CONFIG.to_dict(), "d_ff": 64}),
    )
    assert "different architectures (d_ff: 32 vs 64)" in error(
        "--alpha", "0.5", "--start", wider, "--output", out
    )
    from data_pipelines import vocabulary

    other_vocab = vocabulary.train_from_corpus(
        stdlib_corpus["data_dir"], str(tmp_path / "other_spm"), vocab_size=CONFIG.vocab_size - 24
    )
    other, _ = _model_dir(tmp_path / "other", other_vocab, 3)
    assert "vocabulary is not" in error("--alpha", "0.5", "--start", other, "--output", out)
    # The recorded start's weights must be the ones training read.
    moved, _ = _model_dir(
        tmp_path / "moved",
        stdlib_corpus["vocabulary"],
        4,
        source={"init_from": start, "safetensors_sha256": "0" * 64},
    )
    assert (
        weight_interpolation.main(["--checkpoint", moved, "--alpha", "0.5", "--output", out]) == 2
    )
    assert f"is not the {'0' * 64} that {moved} was trained from" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_latest_saved_step_skips_unfinished_saves_and_names_a_missing_directory(tmp_path):
    model_dir = tmp_path / "model"
    with pytest.raises(FileNotFoundError, match="no checkpoints"):
        checkpoints.latest_saved_step(str(model_dir))
    for step in (3, 12):
        checkpoints.save_params(str(model_dir), step, {"w": np.zeros(2, np.float32)})
    # What Orbax leaves of a save killed mid-way: a temporary directory, never a step.
    (model_dir / checkpoints.CHECKPOINT_SUBDIR / "20.orbax-checkpoint-tmp-1").mkdir()
    assert checkpoints.latest_saved_step(str(model_dir)) == 12
    empty = tmp_path / "empty"
    (empty / checkpoints.CHECKPOINT_SUBDIR / "5.orbax-checkpoint-tmp-1").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="contains no finished checkpoint"):
        checkpoints.latest_saved_step(str(empty))
