"""What stops a training run between two steps: a non-finite step, or a preemption signal.

`NonFiniteGuard` reads each step's `nonfinite` flag (`Trainer.train_step` leaves the state
unchanged on such a step) one step late, so the host never waits for the device except
before a checkpoint, and raises `NonFiniteError` naming the step (after `max_skipped` skipped
steps, if allowed). `PreemptionWatch` turns SIGTERM and SIGINT into a request to save and
stop at a step that every process of the job agrees on; the loop then raises `Preempted`.
See docs/design.md (fault tolerance).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Mapping

import jax
from jax.experimental import multihost_utils


class NonFiniteError(FloatingPointError):
    """A step's loss, gradient norm or update norm was NaN or infinite (more often than
    allowed)."""

    def __init__(self, step: int, values: Mapping[str, float], skipped: int, allowed: int):
        self.step = step
        shown = ", ".join(f"{name} {value}" for name, value in values.items())
        allowance = f"{skipped} non-finite steps, {allowed} allowed" if allowed else "none allowed"
        super().__init__(
            f"step {step} is not finite ({shown}; {allowance}). Its update was not applied and "
            "no state after it is saved: the checkpoints in the model directory are the last "
            "finite ones. Lower the learning rate, look at this step's data, or let the run "
            "skip a few such steps with --gin.train.max_nonfinite_steps=N."
        )


class NonFiniteGuard:
    """Stops a run at its first non-finite step, or after `max_skipped` of them.

    Call `after_step(step, metrics)` after every step (`metrics` the step's device scalars,
    with `nonfinite`, `loss`, `grad_norm`) and `check_all()` before a checkpoint is saved.
    A skipped step (within the allowance) is reported on stderr; its update was not applied.
    """

    def __init__(self, max_skipped: int = 0):
        if max_skipped < 0:
            raise ValueError(f"max_nonfinite_steps must be >= 0, got {max_skipped}")
        self.max_skipped = max_skipped
        self.skipped = 0
        self._pending: list[tuple[int, Mapping[str, jax.Array]]] = []

    def after_step(self, step: int, metrics: Mapping[str, jax.Array]) -> None:
        """Records `step`'s metrics and checks the steps before it (already computed, or
        nearly: reading them does not stall the device's queue of one step)."""
        self._pending.append((step, metrics))
        while len(self._pending) > 1:
            self._check(*self._pending.pop(0))

    def check_all(self) -> None:
        """Checks every recorded step (waits for the last one to finish)."""
        while self._pending:
            self._check(*self._pending.pop(0))

    def _check(self, step: int, metrics: Mapping[str, jax.Array]) -> None:
        if float(metrics["nonfinite"]) == 0.0:
            return
        self.skipped += 1
        values = {name: float(metrics[name]) for name in ("loss", "grad_norm", "update_norm")}
        if self.skipped > self.max_skipped:
            raise NonFiniteError(step, values, self.skipped, self.max_skipped)
        if jax.process_index() == 0:
            shown = ", ".join(f"{name} {value}" for name, value in values.items())
            print(
                f"step {step} is not finite ({shown}); its update was skipped "
                f"({self.skipped} of {self.max_skipped} allowed)",
                file=sys.stderr,
                flush=True,
            )


class Preempted(Exception):  # noqa: N818 (a stop asked for, not a failure)
    """The run saved `step` and stopped because a process got SIGTERM or SIGINT."""

    def __init__(self, step: int, signum: int):
        self.step, self.signum = step, signum
        super().__init__(
            f"stopped by {signal.Signals(signum).name} after saving step {step}; run the same "
            "command again to resume"
        )

    @property
    def exit_code(self) -> int:
        """The shell's code for death by the signal (143 for SIGTERM, 130 for SIGINT), so
        that schedulers and retry loops see that the run is not finished."""
        return 128 + self.signum


class PreemptionWatch:
    """A context manager that turns SIGTERM and SIGINT into `requested(step)` being True at
    one step, the same on every process.

    One process: Python handlers set a flag; a second SIGINT stops at once (KeyboardInterrupt).
    Several processes: JAX's coordination service catches SIGTERM on any process and agrees
    on a sync step with all of them (`multihost_utils.reached_preemption_sync_point`); SIGINT
    is passed on to it as SIGTERM. `requested` must then be called at every step, by every
    process, in order.
    """

    def __init__(self):
        self.signum: int | None = None
        self._multiprocess = jax.process_count() > 1
        self._previous: dict[int, object] = {}

    def __enter__(self) -> PreemptionWatch:
        handled = (signal.SIGINT,) if self._multiprocess else (signal.SIGTERM, signal.SIGINT)
        for signum in handled:
            self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _on_signal(self, signum, frame) -> None:
        if self._multiprocess:
            self.signum = signal.SIGTERM
            signal.raise_signal(signal.SIGTERM)  # to the coordination service's notifier
            return
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        print(
            f"{signal.Signals(signum).name}: saving at the end of this step, then stopping"
            + (" (Ctrl-C again stops without saving)" if signum == signal.SIGINT else ""),
            file=sys.stderr,
            flush=True,
        )

    def requested(self, step: int) -> bool:
        """Whether the run should save `step` and stop."""
        if not self._multiprocess:
            return self.signum is not None
        if multihost_utils.reached_preemption_sync_point(step):
            self.signum = self.signum or signal.SIGTERM
            return True
        return False
