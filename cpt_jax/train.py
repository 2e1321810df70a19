r"""Gin launcher and train loop: `python -m cpt_jax.train --gin_file=... --gin.KEY=VALUE`.

Follows t5x's conventions: run configs in `gin_configs/runs/` include an architecture and a
model size, and set the macros `MODEL_DIR`, `TRAIN_STEPS` and `BATCH_SIZE`; any binding can
be overridden on the command line with `--gin.KEY=VALUE` (VALUE in gin syntax, so strings
are quoted: `--gin.MODEL_DIR="'runs/mine'"`).

Example:
  python -m cpt_jax.train --gin_file=runs/quickstart.gin --gin.TRAIN_STEPS=100

The loop reads top to bottom in stages: mesh, data, model and sharding, state (fresh or
resumed), step, checkpoint, logging, loop.
"""

from __future__ import annotations

import os

# A command-line entry point: keep TensorFlow's C++ start-up chatter (it only reads data
# here, and some dependencies import it) off the console. Set before anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse
import dataclasses
import json
import logging
import sys
import time
from typing import NamedTuple

import gin
import jax

from cpt_jax import checkpoints, files, multihost, partitioning, pretrained, run_config, training
from cpt_jax.models import EncoderConfig
from cpt_jax.tokenization import VOCABULARY_FILES, delimiter_names, load_tokenizer
from data_pipelines import pipeline

GIN_CONFIGS_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "gin_configs")

# A contrastive run's health is read off these (docs/design.md: the loss).
LOGGED_METRICS = (
    "loss",
    "accuracy_q2d",
    "accuracy_d2q",
    "positive_logit_mean",
    "negative_logit_mean",
    "logit_scale",
    "grad_norm",
    "param_norm",
    "update_norm",
)


@gin.configurable
@dataclasses.dataclass(frozen=True)
class PairData:
    """Where the training pairs come from: SeqIO tasks over built corpora.

    Attributes:
      data_dir: one corpus directory (`python -m data_pipelines.build ...`), or several:
        then a mixture of them (see `data_pipelines.tasks.register_pairs_mixture`).
      vocabulary_path: the vocabulary shared by every side and corpus: a SentencePiece
        model, or a pretrained `tokenizer.json`. None with `train(init_from=...)`: the
        pretrained model's own vocabulary.
      task_name: name to register the task (or mixture) under.
      query_length, document_length: token lengths of each side, delimiters included.
      split: which split to train on.
      seed: the data seed; the batch at step `k` depends only on (seed, k).
      mixture_rates: rates of the corpora (in `data_dir` order); None: proportional to
        their training examples to the power `1 / mixture_temperature`.
      mixture_temperature: see `data_pipelines.tasks.mixture_rates`.
      single_task_batches: draw each batch of a mixture from one corpus (harder in-batch
        negatives, no source shortcuts).
      group_batches_by: a corpus field (e.g. `'package'` of code pairs) whose values keep
        together in batches: harder in-batch negatives from within one code base (see
        `data_pipelines.pipeline.grouped_epoch`). None: plain shuffles.
      num_negatives: hard negatives per pair (the corpus needs a `negatives` field); they
        add columns to the loss.
    """

    data_dir: str | tuple[str, ...] = gin.REQUIRED
    vocabulary_path: str | None = None
    task_name: str = "code_pairs"
    query_length: int = 64
    document_length: int = 256
    split: str = "train"
    seed: int = 0
    mixture_rates: tuple[float, ...] | None = None
    mixture_temperature: float = 1.0
    single_task_batches: bool = False
    group_batches_by: str | None = None
    num_negatives: int = 0

    @property
    def sequence_lengths(self) -> dict[str, int]:
        return {"queries": self.query_length, "documents": self.document_length}

    @property
    def data_dirs(self) -> list[str]:
        return [self.data_dir] if isinstance(self.data_dir, str) else list(self.data_dir)

    def register(self) -> str:
        """Registers the task or mixture; returns its name."""
        from data_pipelines import tasks  # seqio/tensorflow only where data is read

        if len(self.data_dirs) == 1:
            tasks.register_pairs_task(
                self.task_name,
                self.data_dirs[0],
                self.vocabulary_path,
                num_negatives=self.num_negatives,
            )
        else:
            tasks.register_pairs_mixture(
                self.task_name,
                self.data_dirs,
                self.vocabulary_path,
                rates=self.mixture_rates,
                temperature=self.mixture_temperature,
                num_negatives=self.num_negatives,
            )
        return self.task_name

    def batches(self, *, batch_size: int, start_step: int, shard_index: int, num_shards: int):
        """This host's rows of global batches `start_step, start_step + 1, ...`."""
        import seqio

        return pipeline.pair_batches(
            self.register(),
            self.split,
            batch_size=batch_size,
            sequence_lengths={"inputs": self.query_length, "targets": self.document_length},
            seed=self.seed,
            start_step=start_step,
            shard_info=seqio.ShardInfo(shard_index, num_shards),
            num_negatives=self.num_negatives,
            single_task_batches=self.single_task_batches,
            group_field=self.group_batches_by,
        )


class MetricsWriter:
    """Writes logged metrics to TensorBoard event files and `metrics.jsonl` (process 0 only).

    A resumed run first drops the `metrics.jsonl` lines past its checkpoint (logged by the
    killed run after its last save), so that every step appears once, as in an
    uninterrupted run.
    """

    def __init__(self, model_dir: str, enabled: bool, start_step: int = 0):
        self.enabled = enabled
        if not enabled:
            return
        from tensorboardX import SummaryWriter

        path = os.path.join(model_dir, "metrics.jsonl")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                kept = [line for line in f if json.loads(line)["step"] <= start_step]
            files.write_bytes_atomic(path, "".join(kept).encode())
        self._tb = SummaryWriter(os.path.join(model_dir, "train"))
        self._jsonl = open(path, "a", encoding="utf-8")  # noqa: SIM115

    def write(self, step: int, scalars: dict[str, float]):
        if not self.enabled:
            return
        for name, value in scalars.items():
            self._tb.add_scalar(name, value, step)
        self._tb.flush()
        self._jsonl.write(json.dumps({"step": step, **scalars}, sort_keys=True) + "\n")
        self._jsonl.flush()

    def close(self):
        if self.enabled:
            self._tb.close()
            self._jsonl.close()


@gin.configurable
def train(
    *,
    model_dir: str = gin.REQUIRED,
    train_steps: int = gin.REQUIRED,
    batch_size: int = gin.REQUIRED,
    data: PairData = gin.REQUIRED,
    model_config: EncoderConfig | None = None,
    loss_config: training.LossConfig | None = None,
    seed: int = 0,
    log_every_steps: int = 10,
    checkpoint_every_steps: int = 200,
    keep_checkpoints: int = 3,
    progress_bar: bool = True,
    grad_cache_chunk_size: int | None = None,
    init_from: str | None = None,
    allow_config_change: bool = False,
) -> training.TrainState:
    """Trains a contrastive encoder, resuming from the latest checkpoint in `model_dir`.

    Args:
      model_dir: where checkpoints, `config.gin`, `model.json` and metrics go.
      train_steps: total optimizer steps (a resumed run stops at the same step).
      batch_size: the GLOBAL number of pairs per step; every pair is a negative for every
        other pair in it, across all devices and hosts.
      data: the training pairs.
      model_config, loss_config: default to the gin-bound `EncoderConfig()` / `LossConfig()`.
      seed: parameter initialisation and dropout seed.
      grad_cache_chunk_size: pairs per encoder pass with gradient caching (None: the whole
        batch at once). Same loss and gradients, activation memory of one chunk: the way
        to a batch far larger than memory allows (`Trainer.grad_cache_chunk_size`).
      init_from: start step 0 from pretrained encoder weights (gin macro `INIT_FROM`):
        'minilm', a Hugging Face BERT directory or a cpt-jax model directory (see
        `cpt_jax.pretrained.load`). The optimizer and the logit scale start fresh. The gin
        `EncoderConfig` must describe the same architecture (an error lists what differs);
        the data is tokenised with the pretrained vocabulary. A resumed run ignores it.
      allow_config_change: resume even though bindings that change what is computed (the
        learning rate, the data, the model...) differ from the directory's `config.gin`;
        the old file is kept as `config.until_step_<N>.gin`. Without it such a resume is
        an error listing the differences (`cpt_jax.run_config`).

    Returns:
      The final train state.
    """
    # Random bits that shard like the arrays they fill (big_vision's setting).
    jax.config.update("jax_threefry_partitionable", True)
    model_config = model_config or EncoderConfig()
    loss_config = loss_config or training.LossConfig()
    os.makedirs(model_dir, exist_ok=True)
    is_chief = jax.process_index() == 0

    # Mesh: all devices of all hosts; the global batch splits over ('data', 'fsdp').
    mesh = partitioning.make_mesh()
    rules = partitioning.logical_axis_rules()
    num_shards = partitioning.num_batch_shards(mesh)
    if batch_size % num_shards or batch_size % jax.process_count():
        raise ValueError(
            f"BATCH_SIZE={batch_size} must divide evenly over {num_shards} batch shards and "
            f"{jax.process_count()} processes"
        )

    # Initial weights: pretrained, when asked (read now: its vocabulary tokenises the data).
    ckpt = checkpoints.Checkpointer(
        model_dir, save_interval_steps=checkpoint_every_steps, max_to_keep=keep_checkpoints
    )
    latest = ckpt.latest_step()
    initial = None
    if init_from is not None:
        initial = _load_initial_model(init_from, model_config, model_dir, is_chief)
        data = _with_pretrained_vocabulary(data, initial, model_dir)

    # Vocabulary: the model's vocab must be the tokenizer's (a mismatch would index garbage).
    if data.vocabulary_path is None:
        raise ValueError("PairData.vocabulary_path is not set (and there is no INIT_FROM)")
    tokenizer = load_tokenizer(data.vocabulary_path)
    if tokenizer.vocab_size != model_config.vocab_size:
        raise ValueError(
            f"EncoderConfig.vocab_size={model_config.vocab_size} but the vocabulary "
            f"{data.vocabulary_path} has {tokenizer.vocab_size} pieces; set VOCAB_SIZE to match"
        )
    if max(data.query_length, data.document_length) > model_config.max_length:
        raise ValueError(
            f"sequence lengths {data.sequence_lengths} exceed EncoderConfig.max_length="
            f"{model_config.max_length}"
        )

    # Model, optimizer, shardings.
    optimizer, schedule = training.make_optimizer(train_steps)
    trainer = training.Trainer(
        model_config=model_config,
        loss_config=loss_config,
        optimizer=optimizer,
        mesh=mesh,
        rules=rules,
        dropout_seed=seed,
        grad_cache_chunk_size=grad_cache_chunk_size,
    )

    # State: resume from the latest checkpoint, else initialise (from pretrained weights).
    if latest is not None:
        _check_resumed_config(model_dir, latest, allow_config_change, is_chief)
        state = ckpt.restore(latest, trainer.abstract_state)
        print(f"Resumed from {ckpt.directory} at step {latest}", flush=True)
    else:
        state = trainer.init_state(seed)
        if initial is not None:
            encoder = _place_like(initial.params, state.params["encoder"])
            state = state.replace(params={**state.params, "encoder": encoder})
            print(f"Initialised the encoder from {init_from}", flush=True)
    start_step = int(jax.device_get(state.step))

    if is_chief:
        checkpoints.write_model_metadata(
            model_dir,
            model_config=model_config.to_dict(),
            vocabulary=tokenizer.serialized_model,
            vocabulary_file=VOCABULARY_FILES[type(tokenizer)],
            sequence_lengths=data.sequence_lengths,
            delimiters=delimiter_names(tokenizer),
            source=None if initial is None else {"init_from": init_from, **initial.source},
        )
        files.write_bytes_atomic(
            os.path.join(model_dir, checkpoints.CONFIG_FILE), gin.operative_config_str().encode()
        )

    # Data: this host reads the rows of every global batch that its devices hold.
    first_row, end_row = multihost.host_batch_rows(mesh, batch_size)
    per_host_batch = end_row - first_row
    batches = data.batches(
        batch_size=per_host_batch,
        start_step=start_step,
        shard_index=first_row // per_host_batch,
        num_shards=batch_size // per_host_batch,
    )

    # Loop.
    writer = MetricsWriter(model_dir, enabled=is_chief, start_step=start_step)
    bar = _progress_bar(start_step, train_steps, enabled=progress_bar and is_chief)
    window_start, window_steps = time.perf_counter(), 0
    try:
        for step in range(start_step, train_steps):
            batch = partitioning.host_local_batch_to_global(next(batches), mesh)
            # Implicit host<->device copies inside the step would be silent slowdowns.
            with jax.transfer_guard("disallow"):
                state, metrics = trainer.train_step(state, batch)
            window_steps += 1
            done = step + 1
            ckpt.save(done, state, force=done == train_steps)
            if done % log_every_steps == 0 or done == train_steps:
                scalars = {k: float(v) for k, v in jax.device_get(metrics).items()}
                elapsed = time.perf_counter() - window_start
                scalars["pairs_per_second"] = window_steps * batch_size / elapsed
                scalars["learning_rate"] = float(schedule(step))
                writer.write(done, scalars)
                bar.set_postfix(
                    loss=f"{scalars['loss']:.3f}",
                    acc=f"{scalars['accuracy_q2d']:.2f}",
                    scale=f"{scalars['logit_scale']:.1f}",
                    pairs_s=f"{scalars['pairs_per_second']:.1f}",
                )
                window_start, window_steps = time.perf_counter(), 0
            bar.update(1)
    finally:
        bar.close()
        writer.close()
        ckpt.close()
    return state


def _check_resumed_config(model_dir: str, step: int, allow_change: bool, is_chief: bool):
    """Refuses to resume `model_dir` under a config that computes something else."""
    path = os.path.join(model_dir, checkpoints.CONFIG_FILE)
    if not os.path.exists(path):  # checkpoints written by hand or by an older cpt-jax
        return
    with open(path) as f:
        stored = f.read()
    changes = run_config.config_changes(stored, gin.operative_config_str())
    for key, old, new in changes:
        if key == "train.train_steps":
            print(
                f"TRAIN_STEPS changed {old} -> {new}: the schedule follows the new total",
                flush=True,
            )
    conflicts = run_config.resume_conflicts(changes)
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
    if is_chief:
        kept = os.path.join(model_dir, f"config.until_step_{step}.gin")
        files.write_bytes_atomic(kept, stored.encode())


def _load_initial_model(init_from: str, model_config: EncoderConfig, model_dir: str, log: bool):
    """The pretrained model `init_from` names, checked against the gin `EncoderConfig`."""
    initial = pretrained.load(init_from)
    # Any field but the training-only ones must match, or the weights would be misread.
    differing = model_config.architecture_differences(initial.config)
    if differing:
        listed = ", ".join(f"{k}: gin {a!r} vs pretrained {b!r}" for k, (a, b) in differing.items())
        raise ValueError(
            f"INIT_FROM={init_from!r} has another architecture than the gin EncoderConfig "
            f"({listed}); include the matching model gin files (e.g. models/minilm.gin)"
        )
    if log:
        print(f"INIT_FROM {init_from}: {initial.source}", flush=True)
    return initial


def _with_pretrained_vocabulary(data: PairData, initial, model_dir: str) -> PairData:
    """`data` tokenised with the pretrained model's vocabulary (saved into `model_dir`,
    which every host can read), or the same `data` if it names that very vocabulary."""
    vocabulary = initial.tokenizer.serialized_model
    if data.vocabulary_path is not None:
        with open(data.vocabulary_path, "rb") as f:
            if f.read() != vocabulary:
                raise ValueError(
                    f"PairData.vocabulary_path={data.vocabulary_path} is not the vocabulary of "
                    "INIT_FROM's model; leave it unset to use the pretrained vocabulary"
                )
        return data
    path = os.path.join(model_dir, VOCABULARY_FILES[type(initial.tokenizer)])
    if jax.process_index() == 0:
        files.write_bytes_atomic(path, vocabulary)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("pretrained vocabulary written")
    return dataclasses.replace(data, vocabulary_path=path)


def _place_like(values, like):
    """Host numpy `values` as global arrays with the shardings of the arrays in `like`
    (each host holds the whole values and gives each of its devices its slice)."""
    import numpy as np

    def place(value, target):
        value = np.asarray(value, target.dtype)
        if value.shape != target.shape:
            raise ValueError(f"pretrained shape {value.shape} != model shape {target.shape}")
        return jax.make_array_from_callback(value.shape, target.sharding, lambda i: value[i])

    return jax.tree.map(place, values, like)


def _progress_bar(start: int, total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=start,
        disable=not enabled,
        desc="train",
        unit="step",
        dynamic_ncols=True,
    )


# -- command line -------------------------------------------------------------------------
class LaunchArgs(NamedTuple):
    """The parsed command line: gin files, bindings and search paths, and the multi-process
    options (None for a single process)."""

    gin_files: list[str]
    gin_bindings: list[str]
    gin_search_paths: list[str]
    distributed: multihost.DistributedOptions | None


def parse_args(argv: list[str], environ=os.environ) -> LaunchArgs:
    """Parses t5x-style arguments.

    `--gin.KEY=VALUE` becomes the binding `KEY = VALUE`; `--gin_bindings=...` is taken as is.
    `--coordinator_address`, `--process_count` and `--process_index` (or the environment
    variables `COORDINATOR_ADDRESS`, `PROCESS_COUNT`, `PROCESS_INDEX`) join a multi-process
    job; all three or none.
    """
    gin_args = [a for a in argv if a.startswith("--gin.")]
    parser = argparse.ArgumentParser(
        prog="python -m cpt_jax.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--gin_file", action="append", default=[], help="gin file (repeatable)")
    parser.add_argument("--gin_bindings", action="append", default=[], help="gin binding")
    parser.add_argument(
        "--gin_search_paths", action="append", default=[], help="extra include dirs"
    )
    group = parser.add_argument_group("multi-process jobs (one process per host)")
    group.add_argument("--coordinator_address", help="host:port of process 0")
    group.add_argument("--process_count", type=int, help="number of processes")
    group.add_argument("--process_index", type=int, help="this process's index")
    group.add_argument(
        "--initialization_timeout", type=int, default=300, help="seconds to wait for all peers"
    )
    group.add_argument(
        "--heartbeat_timeout",
        type=int,
        default=100,
        help="seconds after which a silent peer is declared dead and the job stops",
    )
    args = parser.parse_args([a for a in argv if not a.startswith("--gin.")])
    bindings = list(args.gin_bindings)
    for arg in gin_args:
        key, sep, value = arg[len("--gin.") :].partition("=")
        if not sep:
            raise SystemExit(f"error: {arg!r} needs a value: --gin.KEY=VALUE")
        bindings.append(f"{key} = {value}")
    if not args.gin_file:
        raise SystemExit("error: at least one --gin_file is required")
    try:
        distributed = multihost.options_from(
            args.coordinator_address,
            args.process_count,
            args.process_index,
            environ=environ,
            initialization_timeout_s=args.initialization_timeout,
            heartbeat_timeout_s=args.heartbeat_timeout,
        )
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    return LaunchArgs(args.gin_file, bindings, args.gin_search_paths, distributed)


def parse_gin(gin_files: list[str], bindings: list[str], search_paths: list[str] = ()) -> None:
    """Parses gin files (resolved against cwd, the search paths, and `gin_configs/`)."""
    paths = [os.getcwd(), *search_paths, GIN_CONFIGS_DIR]
    for path in paths:
        gin.add_config_file_search_path(path)
    _make_gin_resource_lookup_tolerant()
    resolved = []
    for name in gin_files:
        found = [os.path.join(p, name) for p in paths if os.path.isfile(os.path.join(p, name))]
        if not found:
            raise FileNotFoundError(f"gin file {name!r} not found in {paths}")
        resolved.append(os.path.abspath(found[0]))
    gin.parse_config_files_and_bindings(resolved, bindings, finalize_config=False)


def _make_gin_resource_lookup_tolerant() -> None:
    """Works around gin treating `dir/file.gin` as a Python package resource (and its noise).

    For an include such as `models/tiny.gin`, gin asks `importlib` for a package `models`;
    when a plain directory of that name is on `sys.path` (a `models/` or `runs/` folder in the
    working directory), it is a namespace package without an origin, and gin crashes with a
    TypeError instead of moving on to the next search path.
    """
    # Its failed lookups are logged as errors on the root logger; they are expected misses.
    root = logging.getLogger()
    if not any(getattr(f, "_cpt_gin", False) for f in root.filters):
        quiet = logging.Filter()
        quiet.filter = lambda record: record.module != "resource_reader"
        quiet._cpt_gin = True
        root.addFilter(quiet)
    readers = gin.config._FILE_READERS  # noqa: SLF001 (no public hook for this)
    for i, (reader, exists) in enumerate(readers):
        if getattr(exists, "_cpt_tolerant", False):
            continue

        def tolerant(path, exists=exists):
            try:
                return exists(path)
            except TypeError:
                return False

        tolerant._cpt_tolerant = True
        readers[i] = (reader, tolerant)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # Before anything touches a device: every host's devices join one job.
    multihost.initialize(args.distributed)
    parse_gin(args.gin_files, args.gin_bindings, args.gin_search_paths)
    state = train()
    if jax.process_index() == 0:
        print(f"Finished at step {int(jax.device_get(state.step))}.", flush=True)


if __name__ == "__main__":
    main()
