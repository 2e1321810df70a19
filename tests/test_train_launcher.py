"""The launcher's command line (`cpt_jax.gin_cli`) and metrics log (`cpt_jax.metrics_log`),
without training."""

import json
import os

import gin
import numpy as np
import pytest

from cpt_jax import gin_cli, metrics_log, multihost, partitioning


def test_t5x_style_arguments_become_gin_bindings():
    files, bindings, paths, distributed = gin_cli.parse_args(
        [
            "--gin_file=runs/a.gin",
            "--gin.TRAIN_STEPS=5",
            "--gin.MODEL_DIR='x=y'",
            "--gin_bindings=BATCH_SIZE = 4",
            "--gin_search_paths=/tmp/g",
        ]
    )
    assert files == ["runs/a.gin"] and paths == ["/tmp/g"]
    assert bindings == ["BATCH_SIZE = 4", "TRAIN_STEPS = 5", "MODEL_DIR = 'x=y'"]
    assert distributed is None
    with pytest.raises(SystemExit, match="needs a value"):
        gin_cli.parse_args(["--gin_file=a.gin", "--gin.TRAIN_STEPS"])
    with pytest.raises(SystemExit, match="at least one --gin_file"):
        gin_cli.parse_args(["--gin.TRAIN_STEPS=3"])


def test_missing_gin_file_is_named():
    with pytest.raises(FileNotFoundError, match="gin file 'runs/nope.gin' not found"):
        gin_cli.parse_gin(["runs/nope.gin"], [])


def test_resumed_metrics_log_drops_steps_past_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in (2, 4, 6, 8)))
    writer = metrics_log.MetricsWriter(str(tmp_path), enabled=True, start_step=4)
    writer.write(6, {"loss": 0.5})
    writer.close()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["step"], r["loss"]) for r in records] == [(2, 1.0), (4, 1.0), (6, 0.5)]


def test_step_logger_logs_every_n_steps_and_the_last(tmp_path):
    """Logged steps, the learning rate of the update each step made, the throughput, and
    TensorBoard events beside metrics.jsonl."""
    metrics = {"loss": np.float32(1.5), "accuracy_q2d": np.float32(0.25), "logit_scale": 14.0}
    with metrics_log.StepLogger(
        str(tmp_path),
        start_step=2,
        total_steps=7,
        pairs_per_step=16,
        log_every=2,
        schedule=lambda step: 0.1 * step,
        enabled=True,
        progress_bar=False,
    ) as logger:
        for step in range(3, 8):
            logger.step_done(step, metrics)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [4, 6, 7]
    np.testing.assert_allclose([r["learning_rate"] for r in records], [0.3, 0.5, 0.6])
    assert all(r["pairs_per_second"] > 0 and r["loss"] == 1.5 for r in records)
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "train"))


@pytest.mark.parametrize(
    "name,mesh_shape,rules",
    [
        ("data_parallel", {"data": 8, "fsdp": 1, "model": 1}, "data_parallel"),
        ("fsdp", {"data": 1, "fsdp": 8, "model": 1}, "fsdp"),
        ("tensor_parallel", {"data": 4, "fsdp": 1, "model": 2}, "data_parallel"),
    ],
)
def test_sharding_gin_files_select_mesh_and_rules(name, mesh_shape, rules):
    gin.clear_config()
    try:
        gin_cli.parse_gin([f"sharding/{name}.gin"], [])
        assert dict(partitioning.make_mesh().shape) == mesh_shape
        assert partitioning.logical_axis_rules() == partitioning.logical_axis_rules(rules)
    finally:
        gin.clear_config()


def test_multi_process_flags_and_environment():
    args = gin_cli.parse_args(
        [
            "--gin_file=a.gin",
            "--coordinator_address=10.0.0.1:1234",
            "--process_count=4",
            "--process_index=3",
            "--heartbeat_timeout=20",
        ],
        environ={},
    )
    assert args.distributed == multihost.DistributedOptions("10.0.0.1:1234", 4, 3, 300, 20)
    env = {"COORDINATOR_ADDRESS": "h:9", "PROCESS_COUNT": "2", "PROCESS_INDEX": "1"}
    from_env = gin_cli.parse_args(["--gin_file=a.gin"], environ=env).distributed
    assert (from_env.coordinator_address, from_env.process_count) == ("h:9", 2)
    # JAX's own default is 100 s; a dead or stopped peer must stop the job within a minute.
    assert from_env.heartbeat_timeout_s == 60
    # Flags win over the environment.
    assert (
        gin_cli.parse_args(
            ["--gin_file=a.gin", "--process_index=0"], environ=env
        ).distributed.process_index
        == 0
    )
    errors = {
        "missing --process_count, --process_index": ["--coordinator_address=h:1"],
        "must be in \\[0, 2\\)": [
            "--coordinator_address=h:1",
            "--process_count=2",
            "--process_index=2",
        ],
        "must be host:port": ["--coordinator_address=h", "--process_count=2", "--process_index=0"],
    }
    for message, flags in errors.items():
        with pytest.raises(SystemExit, match=message):
            gin_cli.parse_args(["--gin_file=a.gin", *flags], environ={})
    with pytest.raises(SystemExit, match="PROCESS_COUNT='two' is not an integer"):
        gin_cli.parse_args(["--gin_file=a.gin"], environ={**env, "PROCESS_COUNT": "two"})


def test_host_batch_rows_on_one_process():
    mesh = partitioning.make_mesh(data=4, model=2)
    assert multihost.host_batch_rows(mesh, 16) == (0, 16)
