"""Embedder input handling that needs no trained model (the end-to-end tests load one)."""

import json

import numpy as np
import pytest

from cpt_jax import embed


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_read_jsonl_field_reads_strings_and_skips_blank_lines(tmp_path):
    path = write_lines(
        tmp_path / "in.jsonl", [json.dumps({"text": "a"}), "", json.dumps({"text": "", "x": 1})]
    )
    assert embed.read_jsonl_field(path, "text") == ["a", ""]


@pytest.mark.parametrize(
    "lines, message",
    [
        (['{"text": "ok"}', "{not json"], r"in\.jsonl:2: invalid JSON"),
        (['{"text": "ok"}', '{"body": "x"}'], r"in\.jsonl:2: missing field 'text'"),
        (['{"text": 3}'], r"in\.jsonl:1: field 'text' is int, expected a string"),
        (["[1, 2]"], r"in\.jsonl:1: missing field 'text'"),
    ],
)
def test_read_jsonl_field_errors_name_file_line_and_field(tmp_path, lines, message):
    path = write_lines(tmp_path / "in.jsonl", lines)
    with pytest.raises(ValueError, match=message):
        embed.read_jsonl_field(path, "text")


def test_read_jsonl_field_unreadable_and_non_utf8(tmp_path):
    with pytest.raises(OSError, match=r"missing\.jsonl: cannot read input file"):
        embed.read_jsonl_field(str(tmp_path / "missing.jsonl"), "text")
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"text": "caf\xe9"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: not valid UTF-8"):
        embed.read_jsonl_field(str(bad), "text")


def test_cli_reports_bad_input_with_exit_code_2(tmp_path, capsys):
    path = write_lines(tmp_path / "in.jsonl", ['{"body": "x"}'])
    code = embed.main(
        ["--checkpoint", str(tmp_path), "--input", path, "--output", str(tmp_path / "o.npy")]
    )
    assert code == 2
    assert "in.jsonl:1: missing field 'text'" in capsys.readouterr().err


def test_cli_reports_a_directory_that_is_not_a_model(tmp_path, capsys):
    path = write_lines(tmp_path / "in.jsonl", ['{"text": "x"}'])
    code = embed.main(
        ["--checkpoint", str(tmp_path), "--input", path, "--output", str(tmp_path / "o.npy")]
    )
    assert code == 2
    assert "model.json is missing" in capsys.readouterr().err


def test_trim_to_bucket_keeps_every_token():
    tokens = np.zeros((3, 128), np.int32)
    tokens[0, :5] = 7
    tokens[1, :20] = 7
    trimmed = embed._trim_to_bucket(tokens, 128)
    assert trimmed.shape == (3, 32)
    assert (trimmed != 0).sum() == (tokens != 0).sum()
    assert embed._trim_to_bucket(tokens, 24).shape == (3, 24)
    assert embed._trim_to_bucket(np.zeros((2, 64), np.int32), 64).shape == (2, 16)


class WordTokenizer:
    """One id per word (its length + 1), right-padded with 0: lengths follow the texts."""

    def encode(self, texts, kind, max_length):
        ids = np.zeros((len(texts), max_length), np.int32)
        for i, text in enumerate(texts):
            words = [len(w) + 1 for w in text.split()][:max_length]
            ids[i, : len(words)] = words
        return ids


def test_encode_batches_by_length_and_returns_rows_in_input_order():
    """Mixed lengths are grouped into batches of similar length, and each row comes back
    where its text was, equal to the text encoded alone."""
    import jax

    from cpt_jax.models import Encoder, EncoderConfig

    config = EncoderConfig(
        vocab_size=32, d_model=16, num_heads=2, d_ff=32, num_layers=1,
        max_length=64, layer_norm="post", pooling="mean", causal=False,
    )  # fmt: skip
    params = Encoder(config).init(jax.random.key(0), np.ones((1, 8), np.int32))["params"]
    embedder = embed.Embedder(config, params, WordTokenizer(), {"queries": 64, "documents": 64})
    rng = np.random.default_rng(0)
    texts = [" ".join(["ab"] * int(n)) for n in rng.integers(1, 60, size=11)]
    texts = [t.replace("ab", "abc", i % 3) for i, t in enumerate(texts)]
    widths, apply = [], embedder._apply
    embedder._apply = lambda p, tokens: widths.append(tokens.shape[1]) or apply(p, tokens)
    got = embedder.encode(texts, batch_size=4)
    lengths = sorted((len(t.split()) for t in texts), reverse=True)
    # Longest first; each batch as wide as the bucket of its own longest text.
    buckets = [16 if n <= 16 else 32 if n <= 32 else 64 for n in lengths[::4]]
    assert widths == buckets, (widths, lengths)
    embedder._apply = apply
    alone = np.concatenate([embedder.encode([t], batch_size=1) for t in texts])
    np.testing.assert_allclose(got, alone, atol=1e-5)
    assert len({tuple(np.round(r, 4)) for r in got}) == len(set(texts))
