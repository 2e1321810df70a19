"""Checkpoints: an Orbax `CheckpointManager` plus the metadata that makes a model self-describing.

Layout of a model directory:

    MODEL_DIR/
      config.gin             the operative gin config of the run
      model.json             encoder config, sequence lengths, delimiters, vocabulary file,
                             and the pretrained source for converted / INIT_FROM models
      spm.model              the vocabulary: SentencePiece, or `tokenizer.json` (pretrained)
      checkpoints/<step>/    Orbax items `params` (encoder + log_scale) and `opt_state`
      metrics.jsonl          one JSON object per logged step
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

PyTree = Any
CONFIG_FILE = "config.gin"
MODEL_METADATA_FILE = "model.json"
VOCABULARY_FILE = "spm.model"
CHECKPOINT_SUBDIR = "checkpoints"
UNRESTORABLE_SUBDIR = "unrestorable_checkpoints"


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
        self._manager.wait_until_finished()
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


def latest_saved_step(model_dir: str) -> int:
    """The newest finished checkpoint step of `model_dir`."""
    manager = _params_manager(model_dir, create=False)
    try:
        return _latest_finished_step(manager, model_dir)
    finally:
        manager.close()


def restore_params(model_dir: str, abstract_params: PyTree, step: int | None = None) -> PyTree:
    """Restores only the `params` item (the latest step unless given) onto `abstract_params`."""
    manager = _params_manager(model_dir, create=False)
    try:
        step = _latest_finished_step(manager, model_dir) if step is None else step
        restored = manager.restore(
            step, args=ocp.args.Composite(params=ocp.args.StandardRestore(abstract_params))
        )
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


def write_model_metadata(
    model_dir: str,
    *,
    model_config: dict,
    vocabulary: bytes,
    sequence_lengths: dict[str, int],
    delimiters: dict[str, tuple[str, str]],
    vocabulary_file: str = VOCABULARY_FILE,
    source: dict | None = None,
) -> None:
    """Writes `model.json` and the vocabulary so the model dir is self-describing.

    `source` records where a model's initial weights came from (a pretrained name, pin and
    hashes), for models converted or started from pretrained weights.
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
    files.write_json_atomic(os.path.join(model_dir, MODEL_METADATA_FILE), metadata)


def read_model_metadata(model_dir: str) -> dict:
    """Reads `model.json`, with errors that name the file and the missing field."""
    path = os.path.join(model_dir, MODEL_METADATA_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{model_dir} is not a cpt-jax model directory: {MODEL_METADATA_FILE} is missing"
        )
    with open(path, encoding="utf-8") as f:
        try:
            meta = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: invalid JSON ({e})") from e
    for field in ("model_config", "vocabulary_file", "sequence_lengths", "delimiters"):
        if field not in meta:
            raise ValueError(f"{path}: missing field {field!r}")
    return meta
