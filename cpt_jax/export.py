r"""A cpt-jax model directory as a sentence-transformers / Hugging Face model directory.

  python -m cpt_jax.export --checkpoint runs/quickstart --output exported/quickstart [--step N]

The output loads offline with `SentenceTransformer(OUT_DIR)` (a BERT module, mean / CLS /
last-token pooling, normalisation) and with `transformers.AutoModel` / `AutoTokenizer`:
`config.json`, `model.safetensors`, `tokenizer.json` and its config, `modules.json`,
`sentence_bert_config.json`, `1_Pooling/`, `2_Normalize/`, `config_sentence_transformers.json`
and a model card (`README.md`: architecture, where the weights came from, the training
config and the evaluation figures found in the model directory).

What is carried and what is not (also written into the model card):
  - BERT-layout encoders (`layer_norm='post'`, bidirectional) with a Hugging Face
    `tokenizer.json` (models started from MiniLM or another BERT checkpoint): exact. Both
    sides use the same delimiters (`[CLS]` ... `[SEP]`), so the prompts `query` and
    `document` are empty and `encode(..., prompt_name="query")` works as with other models.
  - Sequence lengths: sentence-transformers has one `max_seq_length`; it is set to the
    documents' length, so a query longer than the queries' length is cut later there than
    by cpt-jax (the only difference).
  - GPT-2-layout encoders (causal, pre-LayerNorm) and SentencePiece vocabularies (models
    trained from scratch): refused with an error. Their per-side delimiters are tokens of a
    SentencePiece model that has no exact `tokenizer.json` form here; a prompt would be
    text, tokenised, not the delimiter ids the model was trained on.
  - A projection after pooling (`projection_dim`): refused (not exported yet).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

import jax
import numpy as np
from safetensors.numpy import save_file

from cpt_jax import checkpoints, files
from cpt_jax.embed import abstract_saved_params
from cpt_jax.metrics_log import METRICS_FILE
from cpt_jax.models import EncoderConfig
from cpt_jax.pretrained import bert_hf_config, bert_tensors
from cpt_jax.tokenization import HuggingFaceTokenizer

# EncoderConfig.pooling -> sentence-transformers' Pooling mode.
POOLING_MODES = {
    "mean": "pooling_mode_mean_tokens",
    "cls": "pooling_mode_cls_token",
    "eos": "pooling_mode_lasttoken",
}


class ExportError(ValueError):
    """The model cannot be exported exactly; the message says why."""


def check_exportable(config: EncoderConfig, tokenizer) -> None:
    """Raises `ExportError` unless the model maps exactly onto BERT + pooling + normalise."""
    if config.causal or config.layer_norm != "post":
        raise ExportError(
            "only BERT-layout encoders (layer_norm='post', bidirectional) export exactly; this "
            f"one is causal={config.causal}, layer_norm={config.layer_norm!r} (GPT-2 layout). "
            "See `python -m cpt_jax.export --help` for what is carried."
        )
    if not isinstance(tokenizer, HuggingFaceTokenizer):
        raise ExportError(
            f"the vocabulary is a {type(tokenizer).__name__}, not a Hugging Face tokenizer.json: "
            "its per-side delimiters have no exact sentence-transformers form"
        )
    if config.projection_dim is not None:
        raise ExportError("a projection after pooling (projection_dim) is not exported yet")


def export(model_dir: str, output_dir: str, step: int | None = None) -> dict:
    """Writes `model_dir`'s checkpoint (latest, or `step`) to `output_dir` (which must not
    exist or be empty); returns a summary. Written into a temporary directory beside it and
    renamed, so a crash leaves no half model."""
    meta, config, tokenizer = checkpoints.load_model_files(model_dir)
    check_exportable(config, tokenizer)
    if os.path.exists(output_dir) and os.listdir(output_dir):
        raise FileExistsError(f"{output_dir} exists and is not empty")
    if step is None:
        step = checkpoints.latest_saved_step(model_dir)
    params = checkpoints.restore_params(model_dir, abstract_saved_params(config, meta), step)
    encoder = jax.tree.map(np.asarray, params["encoder"])
    lengths = meta["sequence_lengths"]

    tmp = files.temporary_name(os.path.normpath(output_dir))
    os.makedirs(tmp)
    try:
        _write(tmp, meta, config, tokenizer, encoder, lengths, model_dir, step)
        if os.path.exists(output_dir):
            os.rmdir(output_dir)  # empty, checked above
        os.replace(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {
        "step": step,
        "output": output_dir,
        "max_seq_length": int(lengths["documents"]),
        "dimension": config.embedding_dim,
        "pooling": config.pooling,
    }


def _write(out, meta, config, tokenizer, encoder, lengths, model_dir, step) -> None:
    def write_json(name: str, value) -> None:
        path = os.path.join(out, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(value, f, indent=2)

    # The Hugging Face model and tokenizer.
    write_json("config.json", bert_hf_config(config))
    save_file(
        bert_tensors(encoder, config),
        os.path.join(out, "model.safetensors"),
        metadata={"format": "pt"},
    )
    with open(os.path.join(out, "tokenizer.json"), "wb") as f:
        f.write(tokenizer.serialized_model)
    cls_token, sep_token = tokenizer.delimiters
    specials = {
        "cls_token": cls_token,
        "sep_token": sep_token,
        "pad_token": "[PAD]",
        "unk_token": "[UNK]",
        "mask_token": "[MASK]",
    }
    write_json("special_tokens_map.json", specials)
    write_json(
        "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": int(lengths["documents"]),
            **specials,
        },
    )

    # The sentence-transformers pipeline: BERT -> pooling -> normalise.
    write_json(
        "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {
                "idx": 1,
                "name": "1",
                "path": "1_Pooling",
                "type": "sentence_transformers.models.Pooling",
            },
            {
                "idx": 2,
                "name": "2",
                "path": "2_Normalize",
                "type": "sentence_transformers.models.Normalize",
            },
        ],
    )
    write_json(
        "sentence_bert_config.json",
        {"max_seq_length": int(lengths["documents"]), "do_lower_case": False},
    )
    pooling = {mode: False for mode in POOLING_MODES.values()}
    pooling[POOLING_MODES[config.pooling]] = True
    write_json("1_Pooling/config.json", {"word_embedding_dimension": config.d_model, **pooling})
    os.makedirs(os.path.join(out, "2_Normalize"), exist_ok=True)
    write_json(
        "config_sentence_transformers.json",
        {
            "prompts": {"query": "", "document": ""},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )
    with open(os.path.join(out, "README.md"), "w", encoding="utf-8") as f:
        f.write(model_card(meta, config, lengths, model_dir, step))


def model_card(meta: dict, config: EncoderConfig, lengths, model_dir: str, step: int) -> str:
    """The exported model's README: what it is, how to load it, how it was trained and
    scored, and what the export does not carry."""
    name = os.path.basename(os.path.normpath(model_dir))
    source = meta.get("initialized_from") or {}
    lines = [
        "---",
        "library_name: sentence-transformers",
        "pipeline_tag: sentence-similarity",
        "tags: [sentence-transformers, feature-extraction, cpt-jax]",
        "---",
        "",
        f"# {name}",
        "",
        f"A contrastively trained text/code embedding model exported by cpt-jax from `{name}` "
        f"at step {step}: {config.num_layers} layers, width {config.d_model}, "
        f"{config.num_heads} heads, {config.pooling} pooling, {config.embedding_dim}-dimensional "
        "unit vectors (cosine similarity).",
        "",
        "```python",
        "from sentence_transformers import SentenceTransformer",
        "",
        f'model = SentenceTransformer("path/to/{name}")',
        'q = model.encode(["sort a list in place"], prompt_name="query")',
        'd = model.encode(["def sort(xs): xs.sort()"], prompt_name="document")',
        "```",
        "",
        "## Training",
        "",
        f"- Started from: {json.dumps(source) if source else 'random initialisation'}",
        f"- Sequence lengths: queries {lengths['queries']}, documents {lengths['documents']} "
        "tokens.",
    ]
    sizes = checkpoints.embedding_sizes(meta, config.embedding_dim)
    if len(sizes) > 1:
        lines.append(
            f"- Matryoshka sizes {list(sizes)}: the first N of these coordinates, "
            "re-normalised, are an embedding too "
            f"(`SentenceTransformer(path, truncate_dim={sizes[1]})`)."
        )
    metrics = _last_metrics(model_dir)
    if metrics:
        lines.append(f"- Last logged step: {json.dumps(metrics)}")
    config_gin = os.path.join(model_dir, checkpoints.CONFIG_FILE)
    if os.path.exists(config_gin):
        with open(config_gin, encoding="utf-8") as f:
            lines += ["", "The training run's gin config:", "", "```", f.read().strip(), "```"]
    lines += ["", "## Evaluation", ""]
    path = os.path.join(model_dir, checkpoints.EVAL_FILE)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            lines += [
                f"From `{checkpoints.EVAL_FILE}`:",
                "",
                "```json",
                f.read().strip(),
                "```",
                "",
            ]
    else:
        lines.append("No evaluation file was found in the model directory.")
    lines += [
        "",
        "## What the export does not carry",
        "",
        f"sentence-transformers has one `max_seq_length` ({lengths['documents']}, the "
        f"documents'); cpt-jax cuts queries at {lengths['queries']} tokens, so queries longer "
        "than that embed differently. Both sides use the same delimiters, so the `query` and "
        "`document` prompts are empty.",
        "",
    ]
    return "\n".join(lines)


def _last_metrics(model_dir: str) -> dict | None:
    path = os.path.join(model_dir, METRICS_FILE)
    if not os.path.exists(path):
        return None
    records = [record for _, record in files.iter_records(path)]
    if not records:
        return None
    last = records[-1]
    return {k: last[k] for k in ("step", "loss", "accuracy") if k in last}


# -- command line --------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cpt_jax.export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", required=True, help="model directory written by training")
    parser.add_argument("--output", required=True, help="new directory for the exported model")
    parser.add_argument("--step", type=int, help="the checkpoint's step (default: the latest)")
    args = parser.parse_args(argv)
    try:
        summary = export(args.checkpoint, args.output, args.step)
    except (OSError, ValueError) as e:  # ExportError and ModelDirectoryError included
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"exported step {summary['step']} to {summary['output']} "
        f"({summary['dimension']} dimensions, {summary['pooling']} pooling)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
