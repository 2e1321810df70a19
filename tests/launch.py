"""Starting `python -m cpt_jax.train` as child processes in tests, every launch bounded.

Children get their own simulated CPU devices (`XLA_FLAGS`), never the test process's 8.
"""

import os
import socket
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH_TIMEOUT_S = 300


LAUNCHER = ("-m", "cpt_jax.train")


def launcher_command(model_dir, corpus, *extra, entry=LAUNCHER):
    """The launcher's command line; `entry` may name a test script that wraps it."""
    return [
        sys.executable,
        *entry,
        "--gin_file=runs/tiny_test.gin",
        f"--gin.MODEL_DIR='{model_dir}'",
        f"--gin.DATA_DIR='{corpus['data_dir']}'",
        f"--gin.VOCABULARY='{corpus['vocabulary']}'",
        f"--gin.VOCAB_SIZE={corpus['vocab_size']}",
        *extra,
    ]


def child_env(num_devices=2):
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={num_devices}"
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    for name in ("COORDINATOR_ADDRESS", "PROCESS_COUNT", "PROCESS_INDEX"):
        env.pop(name, None)
    return env


def run_launcher(model_dir, corpus, *extra, num_devices=2):
    result = subprocess.run(
        launcher_command(model_dir, corpus, *extra),
        cwd=REPO,
        env=child_env(num_devices),
        capture_output=True,
        text=True,
        timeout=LAUNCH_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_job(
    model_dir, corpus, *extra, num_processes, devices_per_process, log_dir, entry=LAUNCHER
):
    """Starts one launcher per process on loopback; returns the `Popen`s (stdout+stderr in
    `log_dir/process_<i>.log`)."""
    address = f"127.0.0.1:{free_port()}"
    processes = []
    for index in range(num_processes):
        command = launcher_command(model_dir, corpus, *extra, entry=entry) + [
            f"--coordinator_address={address}",
            f"--process_count={num_processes}",
            f"--process_index={index}",
            "--initialization_timeout=120",
        ]
        # The child keeps its own copy of the file descriptor once started.
        with open(os.path.join(log_dir, f"process_{index}.log"), "w") as log:
            processes.append(
                subprocess.Popen(
                    command,
                    cwd=REPO,
                    env=child_env(devices_per_process),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    return processes


def kill_all(processes):
    """Kills (SIGKILL ends stopped processes too) and reaps whichever are still running."""
    for p in processes:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=30)


def wait_until(condition, processes, what, timeout_s=LAUNCH_TIMEOUT_S):
    """Polls `condition()` while every process runs; fails naming `what` on a death or at
    the deadline."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        dead = [i for i, p in enumerate(processes) if p.poll() is not None]
        assert not dead, f"process {dead[0]} ended before {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout_s} s"
        time.sleep(0.05)


def wait_all(processes, timeout_s=LAUNCH_TIMEOUT_S):
    """Waits for every process (killing all of them past the deadline); returns exit codes."""
    deadline = time.monotonic() + timeout_s
    try:
        for p in processes:
            p.wait(timeout=max(deadline - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired:
        for p in processes:
            p.kill()
        for p in processes:
            p.wait(timeout=30)
        raise AssertionError(f"the job did not finish within {timeout_s} s") from None
    return [p.returncode for p in processes]


def read_log(log_dir, index):
    with open(os.path.join(log_dir, f"process_{index}.log"), errors="replace") as f:
        return f.read()
