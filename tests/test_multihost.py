"""Multi-process training on loopback: 2 processes x 2 CPU devices against 1 process x 4.

Each launch is a real `python -m cpt_jax.train` job whose processes join with
`jax.distributed.initialize` (gloo collectives); every launch is bounded by a timeout and the
tests only ever kill their own children.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import jax
import numpy as np
import pytest
from launch import REPO, kill_all, read_log, run_launcher, start_job, wait_all, wait_until

from cpt_jax import watchdog
from cpt_jax.embed import Embedder

pytestmark = pytest.mark.slow


def losses_by_step(model_dir):
    with open(os.path.join(model_dir, "metrics.jsonl")) as f:
        return {r["step"]: r["loss"] for r in map(json.loads, f)}


def run_job(model_dir, corpus, *extra, log_dir):
    processes = start_job(
        model_dir, corpus, *extra, num_processes=2, devices_per_process=2, log_dir=log_dir
    )
    codes = wait_all(processes)
    assert codes == [0, 0], [read_log(log_dir, i)[-3000:] for i in range(2)]


def restored_params(model_dir):
    """The final checkpoint's encoder parameters, restored in this process."""
    return Embedder.from_checkpoint(model_dir)._params


def test_two_processes_equal_one_process_and_the_checkpoint_moves_to_other_meshes(
    tmp_path, stdlib_corpus
):
    # Independent launches run side by side: one launcher keeps about one core busy.
    two, one = str(tmp_path / "two_processes"), str(tmp_path / "one_process")
    with ThreadPoolExecutor(1) as pool:
        one_process = pool.submit(run_launcher, one, stdlib_corpus, num_devices=4)
        run_job(two, stdlib_corpus, log_dir=str(tmp_path))
        one_process.result()

    # Same global batches, same dropout masks, same losses: dropout is on in tiny_test.gin.
    two_losses, one_losses = losses_by_step(two), losses_by_step(one)
    assert sorted(two_losses) == [2, 4, 6]
    np.testing.assert_allclose(
        [two_losses[s] for s in (2, 4, 6)], [one_losses[s] for s in (2, 4, 6)], rtol=1e-5
    )
    for a, b in zip(jax.tree.leaves(restored_params(two)), jax.tree.leaves(restored_params(one))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)

    # The 2-process checkpoint resumes in 1 process on a 2x1x2 tensor-parallel mesh; a copy
    # of the 1-process checkpoint resumes on 2 data-parallel devices; both continue alike.
    more = ["--gin.TRAIN_STEPS=8"]
    resumed_two = str(tmp_path / "resumed_two")
    shutil.copytree(two, resumed_two)
    resumed_one = str(tmp_path / "resumed_one")
    shutil.copytree(one, resumed_one)
    with ThreadPoolExecutor(1) as pool:
        on_two_devices = pool.submit(run_launcher, resumed_one, stdlib_corpus, *more, num_devices=2)
        result = run_launcher(
            resumed_two,
            stdlib_corpus,
            "--gin_file=sharding/tensor_parallel.gin",
            *more,
            num_devices=4,
        )
        on_two_devices.result()
    assert "Resumed" in result.stdout and "at step 6" in result.stdout
    a, b = losses_by_step(resumed_two), losses_by_step(resumed_one)
    assert 8 in a and 8 in b
    np.testing.assert_allclose(a[8], b[8], rtol=1e-5)


# Long enough for the survivor to wait for its peer's sign of life (7.5 s) before JAX stops it.
HEARTBEAT_TIMEOUT_S = 15
# What each survivor must print: JAX's own error where it names the peer, ours where not.
PEER_NAMED = {
    ("kill", 1): [
        "stopped sending heartbeats):\n1",
        "Task 1 heartbeat timeout",
        "of the failure from process 1 (dead, stopped or cut off)",
    ],
    ("kill", 0): ["the leader task was preempted/died"],
    ("stop", 1): ["stopped sending heartbeats):\n1", "Task 1 heartbeat timeout"],
    ("stop", 0): ["the coordination service on process 0 has not answered for"],
}


# Two more cases (30 s each) run with CPT_JAX_ALL_PEER_CASES=1: their messages come from
# PeerMonitor's sign-of-life wait and its unanswered-call warning, unit-tested in
# test_watchdog.py; in the suite they would cost a minute.
EXTRA = pytest.mark.skipif(
    not os.environ.get("CPT_JAX_ALL_PEER_CASES"), reason="set CPT_JAX_ALL_PEER_CASES=1"
)


@pytest.mark.parametrize(
    "how, victim",
    [
        ("kill", 0),
        ("stop", 1),
        pytest.param("kill", 1, marks=EXTRA),
        pytest.param("stop", 0, marks=EXTRA),
    ],
)
def test_a_peer_that_dies_or_stops_stops_the_others_with_its_name(
    tmp_path, stdlib_corpus, how, victim
):
    """SIGKILL (dead) or SIGSTOP (alive, silent) on process 0 (the coordinator) or 1: the
    survivor exits non-zero within the heartbeat timeout plus 30 s, naming the peer."""
    model_dir, log_dir = str(tmp_path / "run"), str(tmp_path)
    processes = start_job(
        model_dir,
        stdlib_corpus,
        "--gin.TRAIN_STEPS=400",
        f"--heartbeat_timeout={HEARTBEAT_TIMEOUT_S}",
        num_processes=2,
        devices_per_process=2,
        log_dir=log_dir,
    )
    survivor = 1 - victim
    try:
        first_checkpoint = os.path.join(model_dir, "checkpoints", "2")
        wait_until(lambda: os.path.isdir(first_checkpoint), processes, "first checkpoint")
        processes[victim].send_signal(signal.SIGKILL if how == "kill" else signal.SIGSTOP)
        signalled = time.monotonic()
        code = wait_all([processes[survivor]], timeout_s=HEARTBEAT_TIMEOUT_S + 30)[0]
        seconds = time.monotonic() - signalled
    finally:
        kill_all(processes)
    print(f"\n{how} process {victim}: process {survivor} exited {code} after {seconds:.1f} s")
    assert code != 0
    log = read_log(log_dir, survivor)
    assert any(text in log for text in PEER_NAMED[how, victim]), log[-3000:]
    assert f"Process {survivor} of 2: joining the job at 127.0.0.1:" in log


def test_a_peer_hung_in_python_is_stopped_by_the_step_watchdog(tmp_path, stdlib_corpus):
    """Process 1 blocks forever before its 5th batch, alive (heartbeats go on): both
    processes stop with the watchdog's status or JAX's, process 0 naming process 1 and where
    it was; and a job whose process 1 fires first still ends (process 0's failed step must
    not wait in JAX's distributed shutdown: `multihost.abandon_job`)."""
    model_dir, log_dir = str(tmp_path / "run"), str(tmp_path)
    timeout_s = 10
    processes = start_job(
        model_dir,
        stdlib_corpus,
        "--gin.TRAIN_STEPS=400",
        f"--gin.train.step_timeout_seconds={timeout_s}",
        num_processes=2,
        devices_per_process=2,
        log_dir=log_dir,
        entry=("tests/hang_in_python.py", "1", "5"),
    )
    try:
        hangs = "process 1 hangs at its batch 5"
        wait_until(lambda: hangs in read_log(log_dir, 1), processes, "the hang")
        hung = time.monotonic()
        codes = wait_all(processes, timeout_s=timeout_s + 30)
        seconds = time.monotonic() - hung
    finally:
        kill_all(processes)
    print(f"\nhung process 1: exit codes {codes} after {seconds:.1f} s")
    assert all(code != 0 for code in codes)
    assert watchdog.HUNG_EXIT_STATUS in codes  # the first to fire exits with its status
    logs = [read_log(log_dir, i) for i in range(2)]
    fired = [log for log in logs if "step watchdog: no step finished for" in log]
    assert fired, logs[0][-3000:]
    # Process 0 hosts the coordination service: it always lives to say where process 1 was.
    # Process 1, hung in Python, says it only when its own watchdog fires first; when process
    # 0 leaves first, JAX's coordination client ends process 1 at once (SIGABRT).
    where = ("process 1", "step 5, reading its batch")
    assert all(text in logs[0] for text in where), logs[0][-3000:]
    ended_by_jax = codes[1] == -signal.SIGABRT and "distributed service detected fatal" in logs[1]
    assert all(text in logs[1] for text in where) or ended_by_jax, logs[1][-3000:]
    assert "The stack of every thread" in fired[0] and "hang_in_python.py" in fired[0]


def test_abandon_job_exits_at_once_with_the_traceback_and_without_atexit_hooks():
    """A failed process of a job must not run JAX's atexit shutdown (its barrier can wait
    for a dead peer forever): the status it is given, the traceback, no atexit hook."""
    script = (
        "import atexit\n"
        "from cpt_jax import multihost\n"
        "atexit.register(print, 'an atexit hook ran', flush=True)\n"
        "try:\n"
        "    raise ValueError('the step failed')\n"
        "except ValueError as error:\n"
        "    multihost.abandon_job(error, exit_status=3)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert result.returncode == 3, result.stderr[-3000:]
    assert "ValueError: the step failed" in result.stderr
    assert "Traceback" in result.stderr and "without the distributed shutdown" in result.stderr
    assert "an atexit hook ran" not in result.stdout + result.stderr
