"""Fault tolerance of the gin launcher: kills at random moments, preemption signals, a damaged
latest checkpoint, non-finite steps, torn logs. Runs are compared with an uninterrupted run
bit for bit (`assert_array_equal`), parameters and every logged metric but the wall-clock
throughput.

The launches are child processes of `python -m cpt_jax.train` (see `launch.py`), each bounded.
"""

import glob
import json
import os
import random
import shutil
import signal
import subprocess
import time

import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from launch import (
    LAUNCH_TIMEOUT_S,
    REPO,
    child_env,
    kill_all,
    launcher_command,
    read_log,
    run_launcher,
    start_job,
    wait_all,
)

import cpt_jax.train as train_module
from cpt_jax import checkpoints, gin_cli, metrics_log
from cpt_jax.embed import abstract_saved_params
from cpt_jax.models import EncoderConfig
from cpt_jax.step_guards import NonFiniteError, NonFiniteGuard
from cpt_jax.trainer import make_optimizer

pytestmark = pytest.mark.slow

RUN = [
    "--gin.TRAIN_STEPS=24",
    "--gin.train.checkpoint_every_steps=2",
    "--gin.train.log_every_steps=1",
]
TIMING = {"pairs_per_second"}  # wall-clock, the one metric two runs may not share


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, stdlib_corpus):
    model_dir = str(tmp_path_factory.mktemp("uninterrupted") / "run")
    run_launcher(model_dir, stdlib_corpus, *RUN)
    return model_dir


def read_metrics(model_dir):
    """metrics.jsonl, parsed strictly (a NaN token is not JSON)."""
    with open(os.path.join(model_dir, metrics_log.METRICS_FILE)) as f:
        return [json.loads(line, parse_constant=pytest.fail) for line in f]


def saved_params(model_dir, step=None):
    config = EncoderConfig(**checkpoints.read_model_metadata(model_dir)["model_config"])
    return checkpoints.restore_params(model_dir, abstract_saved_params(config), step)


def tensorboard_steps(model_dir, tag="loss"):
    """The steps of `tag` as TensorBoard shows them: event files in name order, and a
    SessionLog START at step s (tensorboardX's `purge_step`) hides the events from s on."""
    import tensorflow as tf

    steps = []
    for path in sorted(glob.glob(os.path.join(model_dir, "train", "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            if event.HasField("session_log") and event.session_log.status == 1:  # START
                steps = [s for s in steps if s < event.step]
            steps += [event.step for value in event.summary.value if value.tag == tag]
    return steps


def assert_same_run(model_dir, reference):
    """Same final parameters and logged metrics, bit for bit; each step logged once."""
    for a, b in zip(
        jax.tree.leaves(saved_params(model_dir)), jax.tree.leaves(saved_params(reference))
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    got, want = read_metrics(model_dir), read_metrics(reference)
    assert [r["step"] for r in got] == [r["step"] for r in want] == list(range(1, 25))
    for g, w in zip(got, want):
        assert {k: v for k, v in g.items() if k not in TIMING} == {
            k: v for k, v in w.items() if k not in TIMING
        }, g["step"]
    assert tensorboard_steps(model_dir) == list(range(1, 25))


def start(model_dir, corpus, *extra):
    return subprocess.Popen(
        launcher_command(model_dir, corpus, *RUN, *extra),
        cwd=REPO,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def logged_steps(model_dir):
    try:
        with open(os.path.join(model_dir, metrics_log.METRICS_FILE)) as f:
            return sum(1 for line in f if line.endswith("\n"))
    except FileNotFoundError:
        return 0


def latest_checkpoint(model_dir):
    steps = glob.glob(os.path.join(model_dir, "checkpoints", "[0-9]*"))
    return max((int(os.path.basename(p)) for p in steps if os.path.basename(p).isdigit()),
               default=None)  # fmt: skip


def saving_now(model_dir):
    """Whether an asynchronous save is under way (Orbax's temporary directory exists)."""
    return bool(glob.glob(os.path.join(model_dir, "checkpoints", "*.orbax-checkpoint-tmp*")))


def wait_for(condition, process, what):
    deadline = time.monotonic() + LAUNCH_TIMEOUT_S
    while not condition():
        if process.poll() is not None:
            return False
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)
    return True


def test_killed_at_random_moments_the_run_ends_bit_for_bit_like_an_uninterrupted_one(
    tmp_path, stdlib_corpus, uninterrupted
):
    """SIGKILL at 6 random moments, 3 of them while an asynchronous save is being written,
    then the run is left to finish: same parameters, same metrics, each step logged once in
    metrics.jsonl and in TensorBoard, no temporary directory left."""
    rng = random.Random(20)
    model_dir = str(tmp_path / "killed")
    kills, during_save, launches = [], 0, 0
    while len(kills) < 6:
        launches += 1
        assert launches < 24, f"no progress: kills {kills}"
        process = start(model_dir, stdlib_corpus)
        try:
            if len(kills) % 2 == 0:  # in the middle of writing a checkpoint
                caught = wait_for(lambda: saving_now(model_dir), process, "a save")
                during_save += caught and saving_now(model_dir)
            else:  # after a random number of steps, at a random moment of a step
                target = logged_steps(model_dir) + rng.randint(1, 5)
                caught = wait_for(lambda t=target: logged_steps(model_dir) >= t, process, "steps")
                time.sleep(rng.uniform(0, 0.05))
            process.send_signal(signal.SIGKILL)
        finally:
            output = process.communicate(timeout=30)[0]
        if not caught:
            assert process.returncode == 0, output[-3000:]
            break  # the run finished before this kill
        kills.append((logged_steps(model_dir), latest_checkpoint(model_dir)))
    assert len(kills) >= 6 and during_save >= 2, (kills, during_save)
    result = run_launcher(model_dir, stdlib_corpus, *RUN)
    assert "Resumed" in result.stdout or "Finished at step 24" in result.stdout
    assert_same_run(model_dir, uninterrupted)
    leftovers = [n for n in os.listdir(os.path.join(model_dir, "checkpoints")) if not n.isdigit()]
    assert leftovers == []
    print(f"kills (steps logged, latest checkpoint): {kills}; {during_save} during a save")


def test_sigterm_then_sigint_save_the_step_and_stop_and_the_resumed_run_is_the_same(
    tmp_path, stdlib_corpus, uninterrupted
):
    """SIGTERM after 5 steps, then (resumed) SIGINT 5 steps later: each saves the step
    reached and exits 128 + the signal; the run then finishes bit for bit like one never
    interrupted. One run for both signals keeps the suite short."""
    model_dir = str(tmp_path / "preempted")
    for signum in (signal.SIGTERM, signal.SIGINT):
        process = start(model_dir, stdlib_corpus)
        try:
            target = logged_steps(model_dir) + 5
            assert wait_for(lambda t=target: logged_steps(model_dir) >= t, process, "steps")
            sent = time.monotonic()
            process.send_signal(signum)
            output = process.communicate(timeout=30)[0]
            seconds = time.monotonic() - sent
        finally:
            if process.poll() is None:
                process.kill()
        assert process.returncode == 128 + signum, output[-3000:]
        saved = checkpoints.latest_saved_step(model_dir)
        assert saved == logged_steps(model_dir) < 24  # the step reached, not the interval's
        assert f"after saving step {saved}" in output
        name = signal.Signals(signum).name
        print(f"{name}: stopped {seconds:.1f} s after the signal at step {saved}")
    run_launcher(model_dir, stdlib_corpus, *RUN)
    assert_same_run(model_dir, uninterrupted)


def test_sigterm_to_one_process_of_a_job_saves_one_agreed_step_and_resumes_alike(
    tmp_path, stdlib_corpus
):
    """Two processes: SIGTERM reaches process 1 only; both agree on a step (JAX's preemption
    sync point), save it once and exit 143; the job resumed on 2 processes ends bit for bit
    like an uninterrupted 2-process job."""

    def job(model_dir, log_dir):
        os.makedirs(log_dir)
        return start_job(model_dir, stdlib_corpus, *RUN, num_processes=2,
                         devices_per_process=2, log_dir=log_dir)  # fmt: skip

    model_dir = str(tmp_path / "preempted")
    processes = job(model_dir, str(tmp_path / "log_a"))
    try:
        assert wait_for(lambda: logged_steps(model_dir) >= 5, processes[0], "steps")
        sent = time.monotonic()
        processes[1].send_signal(signal.SIGTERM)
        codes = wait_all(processes, timeout_s=30)
        seconds = time.monotonic() - sent
    finally:
        kill_all(processes)
    logs = [read_log(str(tmp_path / "log_a"), i) for i in range(2)]
    assert codes == [143, 143], [log[-3000:] for log in logs]
    saved = checkpoints.latest_saved_step(model_dir)
    assert saved < 24 and all(f"after saving step {saved}" in log for log in logs)
    # The resumed job and the uninterrupted reference run side by side (neither is timed).
    reference = str(tmp_path / "reference")
    resumed = job(model_dir, str(tmp_path / "log_b"))
    uninterrupted = job(reference, str(tmp_path / "log_ref"))
    try:
        assert wait_all(resumed) == [0, 0]
        assert wait_all(uninterrupted) == [0, 0]
    finally:
        kill_all(resumed + uninterrupted)
    for a, b in zip(jax.tree.leaves(saved_params(model_dir)),
                    jax.tree.leaves(saved_params(reference))):  # fmt: skip
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    print(f"2 processes: both stopped {seconds:.1f} s after SIGTERM, at step {saved}")


def test_a_latest_checkpoint_that_fails_to_restore_falls_back_to_the_one_before(
    tmp_path, stdlib_corpus, uninterrupted
):
    model_dir = str(tmp_path / "damaged")
    shutil.copytree(uninterrupted, model_dir)
    # Damage every file of the last checkpoint's parameters (a torn write taken as done).
    for path in glob.glob(os.path.join(model_dir, "checkpoints", "24", "params", "**", "*"),
                          recursive=True):  # fmt: skip
        if os.path.isfile(path):
            with open(path, "r+b") as f:
                f.truncate(os.path.getsize(path) // 2)
    result = run_launcher(model_dir, stdlib_corpus, *RUN)
    assert "checkpoint 24" in result.stderr and "failed to restore" in result.stderr
    assert "Resumed from" in result.stdout and "at step 22" in result.stdout
    assert os.path.isdir(os.path.join(model_dir, checkpoints.UNRESTORABLE_SUBDIR, "24"))
    assert_same_run(model_dir, uninterrupted)  # steps 23 and 24 again, alike


def test_metrics_log_survives_a_torn_last_line_and_names_a_bad_one(tmp_path):
    path = tmp_path / metrics_log.METRICS_FILE
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n{"step": 3, "lo')
    writer = metrics_log.MetricsWriter(str(tmp_path), enabled=True, start_step=2)
    writer.write(3, {"loss": float("nan"), "grad_norm": float("inf"), "accuracy": 0.5})
    writer.close()
    assert read_metrics(str(tmp_path)) == [
        {"step": 1, "loss": 2.0},
        {"step": 2, "loss": 1.5},
        {"step": 3, "loss": None, "grad_norm": None, "accuracy": 0.5},
    ]
    path.write_text('{"step": 1, "loss": 2.0}\nnot json\n{"step": 3}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: not a metrics record"):
        metrics_log.MetricsWriter(str(tmp_path), enabled=True, start_step=3)


# -- non-finite steps, in this process (the poison is an optimizer that a test injects) ----------
def poisoned_make_optimizer(bad_update: int):
    """`make_optimizer`, its updates NaN from update `bad_update` (0-based) on: the schedule's
    count stops there, since a non-finite step leaves the optimizer state as it was."""

    def make(total_steps):
        optimizer, schedule = make_optimizer(total_steps)  # gin-configured
        nan_from = optax.scale_by_schedule(lambda n: jnp.where(n == bad_update, jnp.nan, 1.0))
        return optax.chain(optimizer, nan_from), schedule

    return make


def train_in_process(model_dir, corpus, monkeypatch, *bindings):
    monkeypatch.setattr(train_module, "make_optimizer", poisoned_make_optimizer(3))
    gin.clear_config()
    try:
        gin_cli.parse_gin(
            ["runs/tiny_test.gin"],
            [
                f"MODEL_DIR='{model_dir}'",
                f"DATA_DIR='{corpus['data_dir']}'",
                f"VOCABULARY='{corpus['vocabulary']}'",
                f"VOCAB_SIZE={corpus['vocab_size']}",
                "TRAIN_STEPS=12",
                "train.checkpoint_every_steps=1",
                "train.log_every_steps=1",
                *bindings,
            ],
            [],
        )
        return train_module.train()
    finally:
        gin.clear_config()


def test_a_non_finite_step_is_skipped_if_allowed_then_stops_the_run_and_is_never_saved(
    tmp_path, stdlib_corpus, monkeypatch, capfd
):
    """Updates are NaN from step 4 on. With one allowed, step 4 is skipped (its checkpoint
    holds step 3's parameters bit for bit) and step 5 stops the run, named, unsaved."""
    model_dir = str(tmp_path / "nan")
    with pytest.raises(NonFiniteError, match=r"step 5 is not finite .*update_norm nan.*2 non"):
        train_in_process(model_dir, stdlib_corpus, monkeypatch, "train.max_nonfinite_steps=1")
    assert "step 4 is not finite" in capfd.readouterr().err
    assert checkpoints.latest_saved_step(model_dir) == 4
    for a, b in zip(*(jax.tree.leaves(saved_params(model_dir, s)) for s in (3, 4))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(saved_params(model_dir)))
    logged = read_metrics(model_dir)  # valid JSON: NaN is written as null
    assert [r["step"] for r in logged] == [1, 2, 3, 4, 5]
    assert [r["nonfinite"] for r in logged] == [0, 0, 0, 1, 1]
    assert logged[-1]["update_norm"] is None


def test_non_finite_guard_reads_one_step_late_and_counts_the_allowance():
    def metrics(bad):
        return {"nonfinite": float(bad), "loss": 1.0, "grad_norm": np.inf if bad else 1.0,
                "update_norm": 1.0}  # fmt: skip

    guard = NonFiniteGuard(max_skipped=0)
    guard.after_step(1, metrics(False))
    guard.after_step(2, metrics(True))  # read at the next step, or before a save
    with pytest.raises(NonFiniteError, match=r"step 2 is not finite \(loss 1.0, grad_norm inf"):
        guard.after_step(3, metrics(False))
    guard = NonFiniteGuard(max_skipped=1)
    guard.after_step(1, metrics(True))
    guard.after_step(2, metrics(False))
    guard.after_step(3, metrics(True))
    with pytest.raises(NonFiniteError, match=r"step 3 .*2 non-finite steps, 1 allowed"):
        guard.check_all()
    with pytest.raises(ValueError, match="max_nonfinite_steps"):
        NonFiniteGuard(-1)


def test_saved_run_is_not_changed_by_reading_it(uninterrupted, tmp_path):
    """The reference run itself: 24 steps logged once, 3 checkpoints kept, nothing aside."""
    copy = str(tmp_path / "copy")
    shutil.copytree(uninterrupted, copy)
    assert [r["step"] for r in read_metrics(copy)] == list(range(1, 25))
    assert sorted(int(s) for s in os.listdir(os.path.join(copy, "checkpoints"))) == [20, 22, 24]
    assert not os.path.exists(os.path.join(copy, checkpoints.UNRESTORABLE_SUBDIR))
