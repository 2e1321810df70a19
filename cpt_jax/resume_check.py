"""The resume check: a model directory's gin config against the config of a run resuming it.

Training writes gin's operative config to `MODEL_DIR/config.gin`. A run started into a
directory that already holds checkpoints resumes them, so a second experiment pointed at an
old directory by mistake (another learning rate, another corpus) would silently continue the
first one's weights and overwrite its record. `config_changes` lists the differing bindings
and `resume_conflicts` picks those that change the computation; `check_resume` refuses such
a resume (or, allowed, keeps the old config beside the new). Bindings that only change how a
run executes may differ freely (`EXECUTION_ONLY`).

Example:
  >>> stored = "LR = 0.001\\nmake_optimizer.learning_rate = %LR\\ntrain.model_dir = 'a'\\n"
  >>> changes = config_changes(stored, stored.replace("0.001", "0.003").replace("'a'", "'b'"))
  >>> resume_conflicts(changes)
  ['make_optimizer.learning_rate: 0.001 -> 0.003']
"""

from __future__ import annotations

import fnmatch
import os
import re

from cpt_jax import checkpoints, files

# Bindings a resumed run may change. Sharding, chunking and rematerialisation give the same
# loss and gradients (tested in test_trainer / test_multihost); cadence and paths are
# bookkeeping; INIT_FROM is ignored on resume; a new TRAIN_STEPS extends (or shortens) the
# run, and the launcher prints the change.
EXECUTION_ONLY = (
    "train.model_dir",
    "train.progress_bar",
    "train.log_every_steps",
    "train.checkpoint_every_steps",
    "train.keep_checkpoints",
    "train.grad_cache_chunk_size",
    "train.init_from",
    "train.train_steps",
    "train.allow_config_change",
    "LossConfig.chunk_size",
    "EncoderConfig.remat",
    "make_mesh.*",
    "logical_axis_rules.*",
)

_MACRO_REFERENCE = re.compile(r"%([A-Za-z_][\w./]*)")


def parse_bindings(text: str) -> dict[str, str]:
    """`{'Configurable.parameter': 'value text'}` of a gin operative config, macros resolved.

    Comment and blank lines are skipped; a line that starts with whitespace continues the
    previous binding's value (gin wraps a long value after a trailing backslash). Macros
    (`NAME = value`, no dot) are substituted into the values that reference them as `%NAME`
    and not returned themselves.
    """
    raw: dict[str, str] = {}
    key = None
    for line_number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace():
            if key is None:
                raise ValueError(f"line {line_number}: a continuation line before any binding")
            raw[key] = (raw[key] + " " + _unwrapped(line)).strip()
            continue
        name, sep, value = line.partition(" = ")
        if not sep:
            raise ValueError(f"line {line_number}: not a gin binding: {line!r}")
        key = name.strip()
        raw[key] = _unwrapped(value)
    macros = {k: v for k, v in raw.items() if "." not in k}

    def resolve(value: str) -> str:
        return _MACRO_REFERENCE.sub(lambda m: macros.get(m.group(1), m.group(0)), value)

    return {k: resolve(v) for k, v in raw.items() if "." in k}


def _unwrapped(text: str) -> str:
    """A piece of a value without surrounding space and gin's trailing `\\` line break."""
    text = text.strip()
    return text[:-1].rstrip() if text.endswith("\\") else text


def is_execution_only(key: str) -> bool:
    """Whether binding `key` (maybe scoped, `scope/Configurable.param`) may differ on resume."""
    unscoped = key.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(unscoped, pattern) for pattern in EXECUTION_ONLY)


def config_changes(stored: str, current: str) -> list[tuple[str, str | None, str | None]]:
    """`(key, stored value, current value)` of every binding that differs, sorted by key.

    A key present on one side only (a parameter added or removed by a newer cpt-jax) has
    `None` on the other side.
    """
    old, new = parse_bindings(stored), parse_bindings(current)
    return [
        (key, old.get(key), new.get(key))
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key)
    ]


def resume_conflicts(changes: list[tuple[str, str | None, str | None]]) -> list[str]:
    """`'key: stored -> current'` for each of `config_changes`'s `changes` that changes what a
    resumed run computes.

    Ignores `EXECUTION_ONLY` bindings and keys present on one side only (a library upgrade
    adding a parameter must not lock old runs; a genuinely different set of configurables,
    such as another data class, also changes a binding present on both sides).
    """
    return [
        f"{key}: {old} -> {new}"
        for key, old, new in changes
        if old is not None and new is not None and not is_execution_only(key)
    ]


def check_resume(
    model_dir: str, step: int, current: str, *, allow_change: bool, keep_old: bool
) -> None:
    """Refuses to resume `model_dir`'s checkpoint `step` under a config that computes
    something else.

    Args:
      model_dir: the directory resumed; its `config.gin` is the stored config (none: a
        directory written by hand or by an older cpt-jax, resumed unchecked).
      step: the checkpoint step resumed (named in the messages).
      current: the resuming run's operative gin config.
      allow_change: resume despite conflicting bindings (`train.allow_config_change`): they
        are printed, and the stored config is kept as `config.until_step_<step>.gin`.
      keep_old: whether this process writes that copy (one process of a multi-host job).

    Raises:
      ValueError: listing the conflicting bindings, unless `allow_change`.
    """
    path = os.path.join(model_dir, checkpoints.CONFIG_FILE)
    if not os.path.exists(path):
        return
    with open(path) as f:
        stored = f.read()
    changes = config_changes(stored, current)
    for key, old, new in changes:
        if key == "train.train_steps":
            print(
                f"TRAIN_STEPS changed {old} -> {new}: the schedule follows the new total",
                flush=True,
            )
    conflicts = resume_conflicts(changes)
    if not conflicts:
        return
    listing = "\n  ".join(conflicts)
    if not allow_change:
        raise ValueError(
            f"{model_dir} holds a checkpoint at step {step} of a run configured otherwise "
            f"({path}); resuming would continue its weights with these bindings changed:\n"
            f"  {listing}\nTrain into a new MODEL_DIR, or set "
            "train.allow_config_change = True to resume anyway."
        )
    print(f"Resuming at step {step} with changed bindings:\n  {listing}", flush=True)
    if keep_old:
        kept = os.path.join(model_dir, f"config.until_step_{step}.gin")
        files.write_bytes_atomic(kept, stored.encode())
