"""The resume check (`cpt_jax.resume_check`): a model directory's config.gin against the config
of a run resuming it."""

import ast
import doctest

import gin
import pytest

import cpt_jax.train  # noqa: F401 (registers the configurables the run configs bind)
from cpt_jax import gin_cli, resume_check

STORED = """\
# Macros:
# ==============================================================================
CORPORA = 'data/pypi_code'
MODEL_DIR = 'runs/a'

# Parameters for make_optimizer:
# ==============================================================================
make_optimizer.learning_rate = 0.0003

# Parameters for PairData:
# ==============================================================================
PairData.data_dir = %CORPORA
PairData.group_batches_by = None

# Parameters for train:
# ==============================================================================
train.model_dir = %MODEL_DIR
train.train_steps = 48
"""


def conflicts(stored, current):
    return resume_check.resume_conflicts(resume_check.config_changes(stored, current))


def test_bindings_of_a_real_gin_config_with_macros_and_wrapped_values():
    long_list = [f"value_number_{i:02d}" for i in range(12)]
    gin.clear_config()
    try:
        gin_cli.parse_gin(
            ["runs/cpt_code.gin"], [f"logical_axis_rules.parameter_sharding = {long_list}"]
        )
        text = gin.config_str()
    finally:
        gin.clear_config()
    assert any(line.startswith(" ") for line in text.splitlines()), "no wrapped value to parse"
    bindings = resume_check.parse_bindings(text)
    assert bindings["make_optimizer.learning_rate"] == "0.0003"
    assert bindings["train.model_dir"] == "'runs/cpt_code'"  # %MODEL_DIR resolved
    assert bindings["PairData.data_dir"] == "'data/pypi_code'"
    assert bindings["train.data"] == "@PairData()"
    assert ast.literal_eval(bindings["logical_axis_rules.parameter_sharding"]) == long_list
    assert "MODEL_DIR" not in bindings  # macros are substituted, not compared


def test_execution_only_changes_are_not_conflicts():
    current = (
        STORED.replace("'runs/a'", "'runs/copy_of_a'")
        .replace("train_steps = 48", "train_steps = 60")
        .replace("# Parameters for train:", "make_mesh.model = 2\n# Parameters for train:")
    )
    assert conflicts(STORED, current) == []
    changes = {key for key, _, _ in resume_check.config_changes(STORED, current)}
    assert changes == {"train.model_dir", "train.train_steps", "make_mesh.model"}


def test_changes_of_what_is_computed_are_named_with_both_values():
    current = STORED.replace("0.0003", "0.0005").replace("pypi_code", "stdlib_code")
    assert conflicts(STORED, current) == [
        "PairData.data_dir: 'data/pypi_code' -> 'data/stdlib_code'",  # through the macro
        "make_optimizer.learning_rate: 0.0003 -> 0.0005",
    ]
    scoped = STORED + "eval/make_optimizer.learning_rate = 0.1\neval/make_mesh.data = 2\n"
    assert conflicts(scoped, scoped.replace("= 0.1", "= 0.2").replace("data = 2", "data = 4")) == [
        "eval/make_optimizer.learning_rate: 0.1 -> 0.2"
    ]


def test_a_parameter_on_one_side_only_is_reported_but_not_a_conflict():
    # A newer cpt-jax adds a parameter with a default that keeps the old behaviour.
    older = STORED.replace("PairData.group_batches_by = None\n", "")
    assert conflicts(older, STORED) == []
    assert resume_check.config_changes(older, STORED) == [
        ("PairData.group_batches_by", None, "None")
    ]


@pytest.mark.parametrize(
    "text,message",
    [
        ("  continued\nx.y = 1\n", "line 1: a continuation line before any binding"),
        ("x.y = 1\nnot a binding\n", "line 2: not a gin binding"),
    ],
)
def test_malformed_config_is_an_error_naming_the_line(text, message):
    with pytest.raises(ValueError, match=message):
        resume_check.parse_bindings(text)


def test_module_example():
    assert doctest.testmod(resume_check).failed == 0


def test_check_resume_refuses_or_keeps_the_old_config(tmp_path, capsys):
    model_dir = str(tmp_path)
    changed = STORED.replace("0.0003", "0.0005").replace("train_steps = 48", "train_steps = 60")
    # No config.gin (written by hand or by an older cpt-jax): resumed unchecked.
    resume_check.check_resume(model_dir, 4, changed, allow_change=False, keep_old=True)
    (tmp_path / "config.gin").write_text(STORED)
    with pytest.raises(ValueError, match=r"step 4 .*\n  make_optimizer.learning_rate: 0.0003 ->"):
        resume_check.check_resume(model_dir, 4, changed, allow_change=False, keep_old=True)
    assert not (tmp_path / "config.until_step_4.gin").exists()
    resume_check.check_resume(model_dir, 4, changed, allow_change=True, keep_old=True)
    assert (tmp_path / "config.until_step_4.gin").read_text() == STORED
    printed = capsys.readouterr().out
    assert "TRAIN_STEPS changed 48 -> 60" in printed and "changed bindings" in printed
