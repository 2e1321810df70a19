"""Multi-process training on loopback: 2 processes x 2 CPU devices against 1 process x 4.

Each launch is a real `python -m cpt_jax.train` job whose processes join with
`jax.distributed.initialize` (gloo collectives); every launch is bounded by a timeout and the
tests only ever kill their own children.
"""

import json
import os
import shutil
import signal
import time

import jax
import numpy as np
import pytest
from launch import read_log, run_launcher, start_job, wait_all

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
    two = str(tmp_path / "two_processes")
    run_job(two, stdlib_corpus, log_dir=str(tmp_path))
    one = str(tmp_path / "one_process")
    run_launcher(one, stdlib_corpus, num_devices=4)

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
    result = run_launcher(
        resumed_two,
        stdlib_corpus,
        "--gin_file=sharding/tensor_parallel.gin",
        *more,
        num_devices=4,
    )
    assert "Resumed" in result.stdout and "at step 6" in result.stdout
    resumed_one = str(tmp_path / "resumed_one")
    shutil.copytree(one, resumed_one)
    run_launcher(resumed_one, stdlib_corpus, *more, num_devices=2)
    a, b = losses_by_step(resumed_two), losses_by_step(resumed_one)
    assert 8 in a and 8 in b
    np.testing.assert_allclose(a[8], b[8], rtol=1e-5)


def test_a_dead_peer_stops_the_job_with_an_error_not_a_hang(tmp_path, stdlib_corpus):
    model_dir = str(tmp_path / "dead_peer")
    processes = start_job(
        model_dir,
        stdlib_corpus,
        "--gin.TRAIN_STEPS=400",
        "--heartbeat_timeout=5",
        num_processes=2,
        devices_per_process=2,
        log_dir=str(tmp_path),
    )
    first_checkpoint = os.path.join(model_dir, "checkpoints", "2")
    deadline = time.monotonic() + 300
    try:
        while not os.path.isdir(first_checkpoint):
            assert all(p.poll() is None for p in processes), read_log(str(tmp_path), 0)[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within the timeout"
            time.sleep(0.05)
        processes[1].send_signal(signal.SIGKILL)
        # The survivor must end on its own, well before its 400 steps would.
        code = wait_all(processes[:1], timeout_s=90)[0]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
    assert code != 0
    log = read_log(str(tmp_path), 0)
    assert "stopped sending heartbeats" in log or "another task died" in log, log[-3000:]
    assert "Process 0 of 2: joining the job at 127.0.0.1:" in log
