"""The step watchdog and the peer monitor, in one process (the multi-process cases, a peer
that dies, is stopped or hangs, are in test_multihost.py)."""

import threading
import time

import pytest

from cpt_jax import watchdog


def _fired_within(recorder, seconds):
    return recorder.fired.wait(seconds)


class _Recorder:
    def __init__(self):
        self.messages = []
        self.fired = threading.Event()

    def __call__(self, message):
        self.messages.append(message)
        self.fired.set()


def test_the_watchdog_waits_for_the_first_step_then_fires_after_a_silence():
    recorder = _Recorder()
    dog = watchdog.StepWatchdog(0.2, describe=lambda: "  process 1: step 3", on_timeout=recorder)
    with dog:
        time.sleep(0.6)  # compiling the first step: not armed yet
        assert recorder.messages == []
        dog.step_done(3)
        assert _fired_within(recorder, 5)
    (message,) = recorder.messages
    assert "no step finished for" in message and "after step 3" in message
    assert "step_timeout_seconds=0.2" in message
    assert "process 1: step 3" in message


def test_the_watchdog_stays_quiet_while_steps_finish_and_after_it_is_closed():
    recorder = _Recorder()
    with watchdog.StepWatchdog(0.3, on_timeout=recorder) as dog:
        for step in range(1, 20):
            dog.step_done(step)
            time.sleep(0.05)
    time.sleep(0.6)
    assert recorder.messages == []


@pytest.mark.parametrize("timeout", [0, -1.0])
def test_a_non_positive_timeout_is_an_error(timeout):
    with pytest.raises(ValueError, match="step_timeout_seconds must be positive"):
        watchdog.StepWatchdog(timeout)


class _Store:
    """The two calls of JAX's coordination client that the monitor uses, in memory."""

    def __init__(self):
        self.values = {}
        self.fail = False
        self.delay_s = 0.0

    def key_value_set(self, key, value, allow_overwrite=False):
        time.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("UNAVAILABLE: failed to connect to the coordination service")
        assert allow_overwrite
        self.values[key] = value

    def key_value_dir_get(self, prefix):
        return [(k, v) for k, v in sorted(self.values.items()) if k.startswith(prefix)]


def test_the_monitor_names_the_peer_that_went_silent_and_where_it_was(monkeypatch):
    store, now = _Store(), [100.0]
    monkeypatch.setattr(watchdog.time, "monotonic", lambda: now[0])
    monitors = [watchdog.PeerMonitor(store, p, 3, interval_s=5.0) for p in range(3)]
    for step, monitor in zip((7, 7, 6), monitors):
        monitor.set_progress(step, "computing the step")
    monitors[2].set_progress(6, "reading its batch")
    for monitor in monitors:
        monitor.poll()
    monitors[0].poll()  # process 0 has seen everyone
    assert monitors[0].silent_peers(older_than_s=12) == []

    now[0] += 30.0  # processes 0 and 1 go on; process 2 stops
    for step, monitor in ((8, monitors[0]), (8, monitors[1])):
        monitor.set_progress(step, "computing the step")
        monitor.poll()
    monitors[0].poll()
    assert monitors[0].silent_peers(older_than_s=12) == [2]
    text = monitors[0].describe()
    assert "process 0 (this process): step 8, computing the step" in text
    assert "process 1: step 8, computing the step\n" in text
    assert "process 2: step 6, reading its batch, silent for 30 s" in text
    assert "furthest behind: process 2 (step 6, reading its batch)" in text
    assert "coordination service (process 0) last answered 0 s ago" in text


def test_a_peer_behind_within_the_same_step_is_named(monkeypatch):
    store = _Store()
    monitors = [watchdog.PeerMonitor(store, p, 2) for p in range(2)]
    monitors[0].set_progress(8, "computing the step")
    monitors[1].set_progress(8, "reading its batch")
    for monitor in monitors + monitors:
        monitor.poll()
    assert "furthest behind: process 1 (step 8, reading its batch)" in monitors[0].describe()
    monitors[1].set_progress(8, "computing the step")
    monitors[1].poll()
    monitors[0].poll()
    assert "furthest behind" not in monitors[0].describe()  # all at the same place


def test_the_monitor_reports_a_coordinator_that_does_not_answer(monkeypatch):
    store = _Store()
    monitor = watchdog.PeerMonitor(store, 1, 2, interval_s=5.0)
    store.fail = True
    monitor.poll()
    text = monitor.describe()
    assert "process 0: never reported" in text
    assert "the coordination service (process 0) has never answered" in text
    assert "UNAVAILABLE: failed to connect" in text


def test_a_coordinator_that_stops_answering_is_named_at_once(capsys):
    store = _Store()
    store.delay_s = 0.5  # a stopped coordinator: the call blocks
    watchdog.PeerMonitor(store, 1, 2, interval_s=0.1).poll()
    assert "process 1: the coordination service on process 0 has not answered for" in (
        capsys.readouterr().err
    )
    store.delay_s = 0.0
    watchdog.PeerMonitor(store, 1, 2, interval_s=0.1).poll()
    assert capsys.readouterr().err == ""


def test_after_a_failure_the_peer_without_a_sign_of_life_is_named():
    store = _Store()
    me, alive, dead = (watchdog.PeerMonitor(store, p, 3, interval_s=0.05) for p in range(3))
    for monitor in (me, alive, dead, me):
        monitor.poll()
    stop = threading.Event()

    def keep_publishing():
        while not stop.wait(0.02):
            alive.poll()

    thread = threading.Thread(target=keep_publishing)
    thread.start()
    try:
        assert me.wait_for_signs_of_life(timeout_s=1.0) == [2]
    finally:
        stop.set()
        thread.join()
    assert "no sign of life within 1 s of the failure from process 2" in me.describe()
