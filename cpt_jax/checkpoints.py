"""Checkpoints: an Orbax `CheckpointManager` plus the metadata that makes a model self-describing.

Layout of a model directory:

    MODEL_DIR/
      config.gin             the operative gin config of the run
      model.json             encoder config, sequence lengths, delimiters, vocabulary file,
                             and the pretrained source for converted / INIT_FROM models
      spm.model              the vocabulary: SentencePiece, or `tokenizer.json` (pretrained)
      checkpoints/<step>/    Orbax items `params` (encoder + log_scale) and `opt_state`
      metrics.jsonl          one JSON object per logged step
      checkpoint_digests/<step>.sha256   digest of a finished checkpoint's parameters
      unrestorable_checkpoints/<step>/   checkpoints that failed to restore, set aside

Parameters and optimizer state are separate items so that inference restores the
parameters alone. Orbax writes each step into a temporary directory and renames it when
complete, so a run killed mid-save leaves the previous step intact; restoring against
`jax.ShapeDtypeStruct`s that carry new shardings reshards onto another mesh.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from cpt_jax import files
from cpt_jax.models import EncoderConfig
from cpt_jax.tokenization import Tokenizer, load_tokenizer

PyTree = Any
CONFIG_FILE = "config.gin"
MODEL_METADATA_FILE = "model.json"
# The quickstart's evaluation of the model, read back by it and by the export's model card.
EVAL_FILE = "eval.json"
VOCABULARY_FILE = "spm.model"
CHECKPOINT_SUBDIR = "checkpoints"
UNRESTORABLE_SUBDIR = "unrestorable_checkpoints"
DIGESTS_SUBDIR = "checkpoint_digests"


class Checkpointer:
    """Periodic, keep-N, resumable checkpoints of a `TrainState` under `model_dir`.

    Example:
      ckpt = Checkpointer(model_dir, save_interval_steps=100, max_to_keep=3)
      step = ckpt.latest_step()     # None: nothing to resume
      state = trainer.init_state(0) if step is None else ckpt.restore(step, abstract_state)
      ...
      ckpt.save(step, state)        # saves only on the interval (or when force=True)
      ckpt.close()                  # waits for the last asynchronous save
    """

    def __init__(self, model_dir: str, *, save_interval_steps: int = 1000, max_to_keep: int = 3):
        self.directory = os.path.abspath(os.path.join(model_dir, CHECKPOINT_SUBDIR))
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                save_interval_steps=save_interval_steps,
                max_to_keep=max_to_keep,
                create=True,
                # The temporary directories of saves that a kill interrupted.
                cleanup_tmp_directories=True,
            ),
            item_names=("params", "opt_state"),
        )

    def latest_step(self) -> int | None:
        """The newest finished checkpoint's step; None when there is none."""
        return self._manager.latest_step()

    def should_save(self, step: int) -> bool:
        """Whether `save(step, ...)` would save on the interval."""
        return self._manager.should_save(step)

    def save(self, step: int, state, *, force: bool = False) -> bool:
        """Saves `state` at `step` if the interval says so (or `force`). Returns whether it did.

        The save is asynchronous: it returns once the arrays are copied off the devices, and
        the step counts as saved (`latest_step`) only when it is complete on disk.
        """
        if jax.process_index() == 0 and (force or self.should_save(step)):
            # A digest of an earlier save of this step (one set aside) would not match.
            _remove_digests(os.path.dirname(self.directory), lambda saved: saved == step)
        return self._manager.save(
            step,
            args=ocp.args.Composite(
                params=ocp.args.StandardSave(state.params),
                opt_state=ocp.args.StandardSave(state.opt_state),
            ),
            force=force,
        )

    def restore(self, step: int, abstract_state):
        """Restores `step` onto the shardings carried by `abstract_state`'s ShapeDtypeStructs."""
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                params=ocp.args.StandardRestore(abstract_state.params),
                opt_state=ocp.args.StandardRestore(abstract_state.opt_state),
            ),
        )
        return abstract_state.replace(
            step=jax.device_put(
                jax.numpy.asarray(step, jax.numpy.int32), abstract_state.step.sharding
            ),
            params=restored.params,
            opt_state=restored.opt_state,
        )

    def restore_latest(self, abstract_state) -> tuple[int, Any]:
        """`(step, state)` of the newest checkpoint that restores.

        A checkpoint that fails to restore (a damaged file, a save cut short in a way Orbax
        did not catch) is reported on stderr and, once an older one has restored, moved to
        `MODEL_DIR/unrestorable_checkpoints/<step>`, kept for inspection, so that the run can
        save that step again. When none restores the error lists why each failed and nothing
        is moved: the cause is more likely the model (another config) than every checkpoint.
        """
        failures = []
        for step in sorted(self._manager.all_steps(), reverse=True):
            try:
                verify_params_digest(os.path.dirname(self.directory), step)
                state = self.restore(step, abstract_state)
                error = None
            except Exception as e:  # noqa: BLE001 (what a damaged checkpoint raises varies)
                error = e
            # Every process must agree, or one would train on while another falls back.
            if _all_processes(error is None):
                self._set_aside([failed for failed, _ in failures])
                return step, state
            error = error or RuntimeError("another process failed to restore it")
            failures.append((step, error))
            print(
                f"checkpoint {step} in {self.directory} failed to restore "
                f"({type(error).__name__}: {error}); trying the one before it",
                file=sys.stderr,
                flush=True,
            )
        listed = "; ".join(f"step {step}: {type(e).__name__}: {e}" for step, e in failures)
        raise RuntimeError(f"no checkpoint in {self.directory} restores ({listed})")

    def _set_aside(self, steps: list[int]) -> None:
        if not steps:
            return
        aside = os.path.join(os.path.dirname(self.directory), UNRESTORABLE_SUBDIR)
        if jax.process_index() == 0:
            os.makedirs(aside, exist_ok=True)
            for step in steps:
                target = os.path.join(aside, str(step))
                if os.path.exists(target):
                    target = f"{target}.{time.time_ns()}"
                os.replace(os.path.join(self.directory, str(step)), target)
                print(f"moved checkpoint {step} to {target}", file=sys.stderr, flush=True)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("unrestorable checkpoints set aside")
        self._manager.reload()

    def wait(self):
        self._manager.wait_until_finished()

    def close(self):
        """Waits for the last save, records the digests of the finished checkpoints'
        parameters (`write_params_digests`) and closes."""
        self._manager.wait_until_finished()
        if jax.process_index() == 0:
            model_dir, steps = os.path.dirname(self.directory), self._manager.all_steps()
            _remove_digests(model_dir, lambda step: step not in steps)
            write_params_digests(model_dir, steps)
        self._manager.close()


def _all_processes(ok: bool) -> bool:
    """Whether `ok` holds on every process of the job."""
    if jax.process_count() == 1:
        return ok
    return bool(multihost_utils.process_allgather(np.asarray(ok)).all())


def _params_manager(model_dir: str, *, create: bool) -> ocp.CheckpointManager:
    """A manager of `model_dir`'s checkpoints for reading or writing the `params` item."""
    directory = os.path.join(model_dir, CHECKPOINT_SUBDIR)
    if not create and not os.path.isdir(directory):
        raise FileNotFoundError(f"{model_dir}: no checkpoints (expected {directory})")
    return ocp.CheckpointManager(
        os.path.abspath(directory),
        item_names=("params", "opt_state"),
        options=ocp.CheckpointManagerOptions(create=create),
    )


def _latest_finished_step(manager: ocp.CheckpointManager, model_dir: str) -> int:
    step = manager.latest_step()
    if step is None:
        raise FileNotFoundError(f"{model_dir}/{CHECKPOINT_SUBDIR}: contains no finished checkpoint")
    return step


def _params_digest(model_dir: str, step: int) -> str:
    """One sha256 over the files of checkpoint `step`'s `params` item."""
    params_dir = os.path.join(model_dir, CHECKPOINT_SUBDIR, str(step), "params")
    if not os.path.isdir(params_dir):
        raise ModelDirectoryError(f"{params_dir}: missing")
    return files.tree_sha256(params_dir)


def _remove_digests(model_dir: str, which) -> None:
    directory = os.path.join(model_dir, DIGESTS_SUBDIR)
    for name in os.listdir(directory) if os.path.isdir(directory) else ():
        stem = name.removesuffix(".sha256")
        if stem.isdigit() and which(int(stem)):
            os.remove(os.path.join(directory, name))


def write_params_digests(model_dir: str, steps) -> None:
    """Writes `DIGESTS_SUBDIR/<step>.sha256` for each finished step that has none: Orbax
    checks no checksums, so a flipped bit in a tensor file would otherwise load as a
    silently different model (`restore_params` verifies them)."""
    for step in steps:
        path = os.path.join(model_dir, DIGESTS_SUBDIR, f"{step}.sha256")
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            files.write_bytes_atomic(path, _params_digest(model_dir, step).encode())


def verify_params_digest(model_dir: str, step: int) -> None:
    """Checks checkpoint `step`'s parameters against their recorded digest, if there is
    one (a run killed before its end has not written it yet)."""
    path = os.path.join(model_dir, DIGESTS_SUBDIR, f"{step}.sha256")
    if not os.path.exists(path):
        return
    with open(path, "rb") as f:
        recorded = f.read().decode("ascii", errors="replace").strip()
    if _params_digest(model_dir, step) != recorded:
        raise ModelDirectoryError(
            f"{os.path.join(model_dir, CHECKPOINT_SUBDIR, str(step))}: the parameters' files "
            f"do not match their digest in {path}: the checkpoint is damaged"
        )


def latest_saved_step(model_dir: str) -> int:
    """The newest finished checkpoint step of `model_dir`."""
    manager = _params_manager(model_dir, create=False)
    try:
        return _latest_finished_step(manager, model_dir)
    finally:
        manager.close()


def restore_params(model_dir: str, abstract_params: PyTree, step: int | None = None) -> PyTree:
    """Restores only the `params` item (the latest step unless given) onto `abstract_params`.

    Raises `ModelDirectoryError` naming the checkpoint when it does not restore (a damaged
    or missing file, shapes that are not the model's), `FileNotFoundError` when there is no
    checkpoint.
    """
    manager = _params_manager(model_dir, create=False)
    try:
        step = _latest_finished_step(manager, model_dir) if step is None else step
        verify_params_digest(model_dir, step)
        try:
            restored = manager.restore(
                step, args=ocp.args.Composite(params=ocp.args.StandardRestore(abstract_params))
            )
        except Exception as e:  # noqa: BLE001 (Orbax and TensorStore raise many kinds)
            where = os.path.join(model_dir, CHECKPOINT_SUBDIR, str(step))
            raise ModelDirectoryError(
                f"{where}: the parameters do not restore ({type(e).__name__}: {e})"[:2000]
            ) from e
        return restored.params
    finally:
        manager.close()


def save_params(model_dir: str, step: int, params: PyTree) -> None:
    """Saves a `params` item alone (no optimizer state) as checkpoint `step`: enough for
    inference and for `INIT_FROM`, which starts a fresh optimizer."""
    manager = _params_manager(model_dir, create=True)
    try:
        manager.save(step, args=ocp.args.Composite(params=ocp.args.StandardSave(params)))
    finally:
        manager.wait_until_finished()
        manager.close()
    write_params_digests(model_dir, [step])


def write_model_metadata(
    model_dir: str,
    *,
    model_config: dict,
    vocabulary: bytes,
    sequence_lengths: dict[str, int],
    delimiters: dict[str, tuple[str, str]],
    vocabulary_file: str = VOCABULARY_FILE,
    source: dict | None = None,
    embedding_sizes: tuple[int, ...] | None = None,
    log_scale_shape: tuple[int, ...] = (),
) -> None:
    """Writes `model.json` and the vocabulary so the model dir is self-describing.

    `source` records where a model's initial weights came from (a pretrained name, pin and
    hashes), for models converted or started from pretrained weights. `embedding_sizes`: the
    prefix lengths trained as embeddings (Matryoshka), largest first; `log_scale_shape`: the
    learned temperature's shape, `[K]` with a scale per size (needed to restore it).
    """
    os.makedirs(model_dir, exist_ok=True)
    files.write_bytes_atomic(os.path.join(model_dir, vocabulary_file), vocabulary)
    metadata = {
        "format_version": 1,
        "model_config": model_config,
        "vocabulary_file": vocabulary_file,
        "sequence_lengths": dict(sequence_lengths),
        "delimiters": {k: list(v) for k, v in delimiters.items()},
    }
    if source is not None:
        metadata["initialized_from"] = source
    if embedding_sizes is not None:
        metadata["embedding_sizes"] = list(embedding_sizes)
    if log_scale_shape:
        metadata["log_scale_shape"] = list(log_scale_shape)
    files.write_json_atomic(os.path.join(model_dir, MODEL_METADATA_FILE), metadata)


class ModelDirectoryError(ValueError):
    """A model directory that cannot be used as it is; the message names the file."""


def read_model_metadata(model_dir: str) -> dict:
    """Reads `model.json`, checked: errors name the file and the field.

    Raises:
      FileNotFoundError: no `model.json`.
      ModelDirectoryError: invalid JSON or UTF-8, a missing field or one of the wrong type, a
        `vocabulary_file` outside the directory.
    """
    path = os.path.join(model_dir, MODEL_METADATA_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{model_dir} is not a cpt-jax model directory: {MODEL_METADATA_FILE} is missing"
        )
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelDirectoryError(f"{path}: invalid JSON ({e})") from e
    if not isinstance(meta, dict):
        raise ModelDirectoryError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    for field, kind in _METADATA_FIELDS.items():
        if field not in meta:
            raise ModelDirectoryError(f"{path}: missing field {field!r}")
        if not isinstance(meta[field], kind):
            raise ModelDirectoryError(
                f"{path}: field {field!r} must be {kind.__name__}, got {type(meta[field]).__name__}"
            )
    for side in ("queries", "documents"):
        length = meta["sequence_lengths"].get(side)
        if not isinstance(length, int) or isinstance(length, bool) or length < 1:
            raise ModelDirectoryError(
                f"{path}: sequence_lengths.{side} must be a positive integer, got {length!r}"
            )
    model_file(model_dir, meta["vocabulary_file"])  # confined, or an error now
    _check_int_list(path, meta, "embedding_sizes", decreasing=True)
    _check_int_list(path, meta, "log_scale_shape", decreasing=False)
    return meta


def _check_int_list(path: str, meta: dict, field: str, decreasing: bool) -> None:
    """An optional field that must be a list of positive integers (strictly decreasing)."""
    value = meta.get(field)
    if value is None:
        return
    ok = isinstance(value, list) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value
    )
    if ok and decreasing:
        ok = bool(value) and all(a > b for a, b in zip(value, value[1:]))
    if not ok:
        order = "strictly decreasing " if decreasing else ""
        raise ModelDirectoryError(
            f"{path}: field {field!r} must be a list of {order}positive integers, got {value!r}"
        )


def embedding_sizes(meta: dict, width: int) -> tuple[int, ...]:
    """The prefix lengths a model was trained to embed with (`model.json`), largest first:
    `(width,)` for a model trained without Matryoshka sizes."""
    return tuple(meta.get("embedding_sizes", [width]))


def log_scale_shape(meta: dict) -> tuple[int, ...]:
    """The shape of a checkpoint's learned log-scale: `()`, or `(K,)` (one per size)."""
    return tuple(meta.get("log_scale_shape", ()))


_METADATA_FIELDS = {
    "model_config": dict,
    "vocabulary_file": str,
    "sequence_lengths": dict,
    "delimiters": dict,
}


def model_file(model_dir: str, name: str) -> str:
    """The path of `name` (a file named by `model.json`) inside `model_dir`; an error if it
    would lead outside it (an absolute path, `..`, a symbolic link out)."""
    root = os.path.realpath(model_dir)
    path = os.path.realpath(os.path.join(root, name))
    if os.path.isabs(name) or os.path.commonpath([root, path]) != root or path == root:
        raise ModelDirectoryError(
            f"{os.path.join(model_dir, MODEL_METADATA_FILE)}: {name!r} is not a file inside "
            f"{model_dir}"
        )
    return path


def load_model_files(model_dir: str) -> tuple[dict, EncoderConfig, Tokenizer]:
    """`(metadata, encoder config, tokenizer)` of a model directory, checked against each
    other: a vocabulary with more ids than the embedding table would look up rows that do
    not exist (`jnp.take` fills them with NaN)."""
    meta = read_model_metadata(model_dir)
    where = os.path.join(model_dir, MODEL_METADATA_FILE)
    try:
        config = EncoderConfig.from_dict(meta["model_config"])
    except ValueError as e:
        raise ModelDirectoryError(f"{where}: model_config: {e}") from e
    vocabulary = model_file(model_dir, meta["vocabulary_file"])
    try:
        tokenizer = load_tokenizer(vocabulary)
    except (OSError, ValueError) as e:
        raise ModelDirectoryError(str(e)) from e
    if tokenizer.vocab_size > config.vocab_size:
        raise ModelDirectoryError(
            f"{vocabulary} has {tokenizer.vocab_size} tokens but {where} gives the embedding "
            f"table {config.vocab_size} rows (model_config.vocab_size)"
        )
    return meta, config, tokenizer
