"""A training run's log: `metrics.jsonl`, TensorBoard event files and the progress bar.

`MetricsWriter` writes logged scalars to both files; `StepLogger` is what the train loop
calls after every step: every `log_every` steps (and at the last) it adds the throughput and
the learning rate to the step's metrics, writes them, and shows them on the progress bar.
Only one process of a job writes (`enabled`).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable

import jax
from tqdm import tqdm

from cpt_jax import files


def _summary_writer_class():
    """tensorboardX's `SummaryWriter`, imported without torch: tensorboardX imports torch
    when it can, only to accept its tensors, which costs every launch 1-2 s (and the test
    suite a minute); scalars need none of it. Where torch is loaded already, a plain import."""
    if "torch" in sys.modules or "tensorboardX" in sys.modules:
        from tensorboardX import SummaryWriter
    else:
        sys.modules["torch"] = None  # makes `import torch` raise ImportError
        try:
            from tensorboardX import SummaryWriter
        finally:
            del sys.modules["torch"]
    return SummaryWriter


SummaryWriter = _summary_writer_class()

METRICS_FILE = "metrics.jsonl"


class MetricsWriter:
    """Writes logged metrics to TensorBoard event files (`model_dir/train/`) and
    `model_dir/metrics.jsonl`, one JSON object per logged step; nothing when not `enabled`.

    A resumed run first drops the `metrics.jsonl` lines past its checkpoint `start_step`
    (logged by the killed run after its last save; a last line cut short by the kill
    included), and tells TensorBoard to purge its events past `start_step`, so that every
    step appears once, as in an uninterrupted run. Non-finite values are written as `null`
    (JSON has no NaN).
    """

    def __init__(self, model_dir: str, enabled: bool, start_step: int = 0):
        self.enabled = enabled
        if not enabled:
            return
        path = os.path.join(model_dir, METRICS_FILE)
        if os.path.exists(path):
            kept = _lines_up_to(path, start_step)
            files.write_bytes_atomic(path, "".join(kept).encode())
        # TensorBoard hides the events of earlier runs from purge_step on (a run killed
        # before its first checkpoint logged steps from 1).
        self._tb = SummaryWriter(os.path.join(model_dir, "train"), purge_step=start_step + 1)
        self._jsonl = open(path, "a", encoding="utf-8")  # noqa: SIM115

    def write(self, step: int, scalars: dict[str, float]):
        """Appends `scalars` as of `step` (completed steps) to both logs, flushed."""
        if not self.enabled:
            return
        for name, value in scalars.items():
            self._tb.add_scalar(name, value, step)
        self._tb.flush()
        record = {"step": step, **{k: v if math.isfinite(v) else None for k, v in scalars.items()}}
        self._jsonl.write(json.dumps(record, sort_keys=True, allow_nan=False) + "\n")
        self._jsonl.flush()

    def close(self):
        if self.enabled:
            self._tb.close()
            self._jsonl.close()


def _lines_up_to(path: str, last_step: int) -> list[str]:
    """The lines of `metrics.jsonl` up to `last_step`; a last line without its newline (a
    write cut short) is dropped, any other unreadable line is an error naming it."""
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    kept = []
    for number, line in enumerate(lines, start=1):
        if number == len(lines) and not line.endswith("\n"):
            break
        try:
            step = json.loads(line)["step"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{path}:{number}: not a metrics record ({e}); {line[:80]!r}") from e
        if step <= last_step:
            kept.append(line)
    return kept


class StepLogger:
    """The train loop's log: call `step_done` after every step; a context manager that
    closes the files and the progress bar.

    Every `log_every` steps, and at `total_steps`, the step's metrics (device scalars,
    fetched only then) are written with `pairs_per_second` (over the steps since the last
    log, checkpoint saves included) and `learning_rate` (the schedule's value for the update
    just made), and the progress bar shows the loss, accuracy, scale and throughput.
    """

    def __init__(
        self,
        model_dir: str,
        *,
        start_step: int,
        total_steps: int,
        pairs_per_step: int,
        log_every: int,
        schedule: Callable[[int], float],
        enabled: bool,
        progress_bar: bool,
    ):
        self.total_steps, self.pairs_per_step = total_steps, pairs_per_step
        self.log_every, self.schedule = log_every, schedule
        self._writer = MetricsWriter(model_dir, enabled=enabled, start_step=start_step)
        self._bar = _progress_bar(start_step, total_steps, enabled=progress_bar and enabled)
        self._window_start, self._window_steps = time.perf_counter(), 0

    def step_done(self, step: int, metrics: dict[str, jax.Array]) -> None:
        """Records that `step` steps are done, `metrics` being the last step's."""
        self._window_steps += 1
        if step % self.log_every == 0 or step == self.total_steps:
            scalars = {k: float(v) for k, v in jax.device_get(metrics).items()}
            elapsed = time.perf_counter() - self._window_start
            scalars["pairs_per_second"] = self._window_steps * self.pairs_per_step / elapsed
            scalars["learning_rate"] = float(self.schedule(step - 1))
            self._writer.write(step, scalars)
            self._bar.set_postfix(
                loss=f"{scalars['loss']:.3f}",
                acc=f"{scalars['accuracy_q2d']:.2f}",
                scale=f"{scalars['logit_scale']:.1f}",
                pairs_s=f"{scalars['pairs_per_second']:.1f}",
            )
            self._window_start, self._window_steps = time.perf_counter(), 0
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()
        self._writer.close()

    def __enter__(self) -> StepLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _progress_bar(start: int, total: int, enabled: bool):
    return tqdm(
        total=total,
        initial=start,
        disable=not enabled,
        desc="train",
        unit="step",
        dynamic_ncols=True,
    )
