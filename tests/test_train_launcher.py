"""The launcher's argument parsing and metrics log, without training."""

import json

import gin
import pytest

from cpt_jax import multihost, partitioning, train


def test_t5x_style_arguments_become_gin_bindings():
    files, bindings, paths, distributed = train.parse_args(
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
        train.parse_args(["--gin_file=a.gin", "--gin.TRAIN_STEPS"])
    with pytest.raises(SystemExit, match="at least one --gin_file"):
        train.parse_args(["--gin.TRAIN_STEPS=3"])


def test_missing_gin_file_is_named():
    with pytest.raises(FileNotFoundError, match="gin file 'runs/nope.gin' not found"):
        train.parse_gin(["runs/nope.gin"], [])


def test_resumed_metrics_log_drops_steps_past_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in (2, 4, 6, 8)))
    writer = train.MetricsWriter(str(tmp_path), enabled=True, start_step=4)
    writer.write(6, {"loss": 0.5})
    writer.close()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["step"], r["loss"]) for r in records] == [(2, 1.0), (4, 1.0), (6, 0.5)]


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
        train.parse_gin([f"sharding/{name}.gin"], [])
        assert dict(partitioning.make_mesh().shape) == mesh_shape
        assert partitioning.logical_axis_rules() == partitioning.logical_axis_rules(rules)
    finally:
        gin.clear_config()


def test_multi_process_flags_and_environment():
    args = train.parse_args(
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
    from_env = train.parse_args(["--gin_file=a.gin"], environ=env).distributed
    assert (from_env.coordinator_address, from_env.process_count) == ("h:9", 2)
    # Flags win over the environment.
    assert (
        train.parse_args(
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
            train.parse_args(["--gin_file=a.gin", *flags], environ={})
    with pytest.raises(SystemExit, match="PROCESS_COUNT='two' is not an integer"):
        train.parse_args(["--gin_file=a.gin"], environ={**env, "PROCESS_COUNT": "two"})


def test_host_batch_rows_on_one_process():
    mesh = partitioning.make_mesh(data=4, model=2)
    assert multihost.host_batch_rows(mesh, 16) == (0, 16)
