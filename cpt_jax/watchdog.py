"""Peers that die or hang in a multi-process job, and steps that stop finishing.

Three layers, each for what the one before cannot see (docs/design.md, fault tolerance):
  1. JAX's coordination service: a process whose heartbeats stop for `--heartbeat_timeout`
     seconds (killed, SIGSTOPped, cut off) is declared dead, and JAX terminates every other
     process with an error naming its task (`/job:jax_worker/replica:0/task:N` is process N).
     Heartbeats come from a C++ thread, so they go on while Python is stuck.
  2. `PeerMonitor`: every few seconds each process writes its progress (step and what it is
     doing) into the coordination service's key-value store and reads everyone's, so that an
     error can name the peer that went silent or fell behind.
  3. `StepWatchdog` (`train.step_timeout_seconds`): a step that does not finish in time, with
     every process alive (a hang inside a collective, a deadlock in a data thread), stops
     the process with exit status `HUNG_EXIT_STATUS`, the peers' progress and the stack of
     every thread, instead of waiting forever.
"""

from __future__ import annotations

import faulthandler
import json
import os
import sys
import threading
import time
from collections.abc import Callable

import jax
from jax._src import distributed as jax_distributed  # the client has no public handle

# What `timeout(1)` returns: the step timed out; a retry loop may restart from the checkpoint.
HUNG_EXIT_STATUS = 124
_KEY_PREFIX = "cpt_jax/progress/"
# What a process may be doing within a step, in order (what `PeerMonitor.set_progress` hears).
READING, COMPUTING, SAVING = "reading its batch", "computing the step", "saving a checkpoint"
STAGES = (READING, COMPUTING, SAVING)


class PeerMonitor:
    """Each process's progress, shared through the coordination service every `interval_s`.

    `set_progress(step, doing)` is a local assignment (cheap, called by the train loop); a
    daemon thread publishes it with a beat counter and reads every process's entry, noting
    on this host's clock when each entry last changed. `describe()` never blocks: it reports
    from the last read, and how long ago the coordination service last answered.

    Args:
      client: the coordination service client (`key_value_set`, `key_value_dir_get`);
        `for_this_job()` passes JAX's.
      process_index, process_count: this process and the job's size.
      interval_s: seconds between two publications.
    """

    def __init__(self, client, process_index: int, process_count: int, interval_s: float = 5.0):
        self._client = client
        self.process_index = process_index
        self.process_count = process_count
        self.interval_s = interval_s
        self._beat = 0
        self._progress: dict = {"step": None, "doing": "starting"}
        self._seen: dict[int, tuple[dict, float]] = {}  # process -> (entry, when it changed)
        self._last_answer: float | None = None
        self._last_error: str | None = None
        self._no_sign_of_life: tuple[list[int], float] | None = None
        self._stop = threading.Event()

    @classmethod
    def for_this_job(cls) -> PeerMonitor | None:
        """A monitor over JAX's coordination service; None for a single process.

        Every 5 s, slower in jobs of more than 64 processes (each round reads every entry,
        so the service's load grows with the square of the job's size).
        """
        # A private handle: where a JAX version moves it, the job runs without the monitor.
        client = getattr(getattr(jax_distributed, "global_state", None), "client", None)
        if jax.process_count() == 1 or client is None:
            return None
        interval_s = max(5.0, jax.process_count() / 12.8)
        return cls(client, jax.process_index(), jax.process_count(), interval_s)

    def set_progress(self, step: int | None, doing: str) -> None:
        """What this process is doing now, e.g. `(13, "reading its batch")`."""
        self._progress = {"step": step, "doing": doing}

    def start(self) -> None:
        """Starts publishing and reading in a daemon thread."""
        threading.Thread(target=self._run, name="cpt_jax-peers", daemon=True).start()

    def stop(self) -> None:
        # Not joined: an RPC to a dead coordinator may block the thread (it is a daemon).
        self._stop.set()

    def _run(self) -> None:
        while True:
            self.poll()
            if self._stop.wait(self.interval_s):
                return

    def poll(self) -> None:
        """Publishes this process's progress and reads everyone's (one round of the thread).

        If the service does not answer within `interval_s`, says so on stderr at once: JAX's
        own error when a stopped coordinator's heartbeats time out does not name it.
        """
        self._beat += 1
        entry = json.dumps({**self._progress, "beat": self._beat})
        started = time.monotonic()
        warning = threading.Timer(self.interval_s, self._warn_unanswered, (started,))
        warning.daemon = True
        warning.start()
        try:
            self._client.key_value_set(
                f"{_KEY_PREFIX}{self.process_index}", entry, allow_overwrite=True
            )
            entries = self._client.key_value_dir_get(_KEY_PREFIX)
        except Exception as error:  # the service is gone or slow: say so in describe()
            self._last_error = f"{type(error).__name__}: {str(error)[:200]}"
            return
        finally:
            warning.cancel()
        now = time.monotonic()
        self._last_answer = now
        for key, value in entries:
            process = int(key.rstrip("/").rsplit("/", 1)[-1])
            parsed = json.loads(value)
            previous = self._seen.get(process)
            if previous is None or previous[0] != parsed:
                self._seen[process] = (parsed, now)

    def _warn_unanswered(self, since: float) -> None:
        print(
            f"process {self.process_index}: the coordination service on process 0 has not "
            f"answered for {time.monotonic() - since:.0f} s: process 0 may be dead, stopped or "
            "cut off (JAX stops this process if it stays silent for the heartbeat timeout)",
            file=sys.stderr,
            flush=True,
        )

    def wait_for_signs_of_life(self, timeout_s: float) -> list[int]:
        """Polls until every other process has published again (its beat changed), for at
        most `timeout_s`; returns those that did not, which `describe()` then names. Called
        after a collective failed: the peer that is gone is the one that stays silent."""
        before = {p: entry["beat"] for p, (entry, _) in self._seen.items()}
        deadline = time.monotonic() + timeout_s
        while True:
            self.poll()
            silent = [
                p
                for p in range(self.process_count)
                if p != self.process_index
                and (p not in self._seen or self._seen[p][0]["beat"] == before.get(p))
            ]
            if not silent or time.monotonic() >= deadline:
                self._no_sign_of_life = (silent, timeout_s)
                return silent
            time.sleep(min(0.5, self.interval_s))

    def silent_peers(self, older_than_s: float) -> list[int]:
        """The other processes whose entry has not changed for `older_than_s` seconds (or
        never appeared), as of the last read."""
        now = time.monotonic()
        return [
            p
            for p in range(self.process_count)
            if p != self.process_index
            and (p not in self._seen or now - self._seen[p][1] > older_than_s)
        ]

    def describe(self) -> str:
        """One line per process: its step, what it was doing and when it last showed life,
        and whether the coordination service (on process 0) still answers."""
        now = time.monotonic()
        silent_ones = set(self.silent_peers(2.5 * self.interval_s))
        lines = []
        for p in range(self.process_count):
            me = " (this process)" if p == self.process_index else ""
            if p == self.process_index:
                entry = self._progress
            elif p in self._seen:
                entry, changed = self._seen[p]
            else:
                lines.append(f"  process {p}: never reported")
                continue
            silent = f", silent for {now - changed:.0f} s" if p in silent_ones else ""
            lines.append(f"  process {p}{me}: step {entry['step']}, {entry['doing']}{silent}")
        entries = {p: e for p, (e, _) in self._seen.items()}
        entries[self.process_index] = self._progress
        places = {p: _place(e) for p, e in entries.items() if e["step"] is not None}
        if len(set(places.values())) > 1:
            lowest = min(places.values())
            behind = sorted(p for p in places if places[p] == lowest)
            shown = ", ".join(str(p) for p in behind)
            entry = entries[behind[0]]
            lines.append(
                f"  furthest behind: process {shown} (step {entry['step']}, {entry['doing']})"
            )
        if self._no_sign_of_life is not None and self._no_sign_of_life[0]:
            silent, waited = self._no_sign_of_life
            shown = ", ".join(str(p) for p in silent)
            lines.append(
                f"  no sign of life within {waited:.0f} s of the failure from process {shown} "
                "(dead, stopped or cut off)"
            )
        if self._last_answer is None:
            service = "the coordination service (process 0) has never answered"
        else:
            service = (
                f"the coordination service (process 0) last answered "
                f"{now - self._last_answer:.0f} s ago"
            )
        if self._last_error:
            service += f"; last error: {self._last_error}"
        return "\n".join([*lines, "  " + service])


def _place(entry: dict) -> tuple[int, int]:
    """How far a process has got: its step, then its stage within the step."""
    doing = entry["doing"]
    return entry["step"], STAGES.index(doing) if doing in STAGES else -1


class StepWatchdog:
    """Stops this process when no step finishes within `timeout_s` seconds.

    Armed at the first `step_done` (the first step compiles, which may take long); from then
    on every `step_done` resets the clock. On a timeout it writes what it knows (the last
    step, `describe()`'s account of the peers, the stack of every thread) to stderr and
    calls `on_timeout` (default: exit at once with `HUNG_EXIT_STATUS`; a hung process
    cannot unwind through the collective it is stuck in). `timeout_s=None` disables it.
    """

    def __init__(
        self,
        timeout_s: float | None,
        describe: Callable[[], str] | None = None,
        on_timeout: Callable[[str], None] | None = None,
    ):
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError(f"step_timeout_seconds must be positive or None, got {timeout_s}")
        self.timeout_s = timeout_s
        self._describe = describe
        self._on_timeout = on_timeout or _exit_hung
        self._last: tuple[int, float] | None = None
        self._stop = threading.Event()

    def __enter__(self) -> StepWatchdog:
        if self.timeout_s is not None:
            threading.Thread(target=self._run, name="cpt_jax-watchdog", daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()

    def step_done(self, step: int) -> None:
        self._last = (step, time.monotonic())

    def _run(self) -> None:
        poll = min(1.0, self.timeout_s / 4)
        while not self._stop.wait(poll):
            if self._last is None:
                continue
            step, when = self._last
            waited = time.monotonic() - when
            if waited > self.timeout_s:
                message = (
                    f"step watchdog: no step finished for {waited:.0f} s after step {step} "
                    f"(train.step_timeout_seconds={self.timeout_s:g}); stopping this process "
                    "so that the job can restart from its last checkpoint."
                )
                if self._describe is not None:
                    message += "\nWhere each process was:\n" + self._describe()
                self._on_timeout(message)
                return


def _exit_hung(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
    print("The stack of every thread of this process:", file=sys.stderr, flush=True)
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    sys.stderr.flush()
    os._exit(HUNG_EXIT_STATUS)
