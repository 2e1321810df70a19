r"""The gin-configured training run: `python -m cpt_jax.train --gin_file=... --gin.KEY=VALUE`.

Follows t5x's conventions: run configs in `gin_configs/runs/` include an architecture and a
model size, and set the macros `MODEL_DIR`, `TRAIN_STEPS` and `BATCH_SIZE`; any binding can
be overridden on the command line with `--gin.KEY=VALUE` (VALUE in gin syntax, so strings
are quoted: `--gin.MODEL_DIR="'runs/mine'"`; see `cpt_jax.gin_cli`).

Example:
  python -m cpt_jax.train --gin_file=runs/quickstart.gin --gin.TRAIN_STEPS=100

`train` reads top to bottom: it runs stages, one small function each, in the order its
docstring lists them and this module defines them.
"""

from __future__ import annotations

import os

# A command-line entry point: keep TensorFlow's C++ start-up chatter (it only reads data
# here, and some dependencies import it) off the console. Set before anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import dataclasses
import sys
from collections.abc import Callable, Iterator

import gin
import jax
import numpy as np
from jax.experimental import multihost_utils

from cpt_jax import checkpoints, files, gin_cli, multihost, partitioning, pretrained, resume_check
from cpt_jax.metrics_log import StepLogger
from cpt_jax.models import EncoderConfig
from cpt_jax.pair_data import PairData
from cpt_jax.step_guards import NonFiniteGuard, Preempted, PreemptionWatch
from cpt_jax.tokenization import VOCABULARY_FILES, delimiter_names, load_tokenizer
from cpt_jax.trainer import LossConfig, Trainer, TrainState, make_optimizer
from cpt_jax.watchdog import COMPUTING, READING, SAVING, PeerMonitor, StepWatchdog


@gin.configurable
def train(
    *,
    model_dir: str = gin.REQUIRED,
    train_steps: int = gin.REQUIRED,
    batch_size: int = gin.REQUIRED,
    data: PairData = gin.REQUIRED,
    model_config: EncoderConfig | None = None,
    loss_config: LossConfig | None = None,
    seed: int = 0,
    log_every_steps: int = 10,
    checkpoint_every_steps: int = 200,
    keep_checkpoints: int = 3,
    progress_bar: bool = True,
    grad_cache_chunk_size: int | None = None,
    init_from: str | None = None,
    allow_config_change: bool = False,
    max_nonfinite_steps: int = 0,
    step_timeout_seconds: float | None = None,
) -> TrainState:
    """Trains a contrastive encoder, resuming from the latest checkpoint in `model_dir`.

    Stages, as they run:
      1. `_set_up_mesh`: every device of every host; the batch must split evenly over it.
      2. open the checkpointer; everything after runs in one try/finally that closes it.
      3. `_load_pretrained`: `init_from`'s model, only when there is no checkpoint to resume.
      4. `_resolve_vocabulary`: the vocabulary that tokenises the data (on resume, the one
         the first run saved into `model_dir`), checked against `model_config`.
      5. `_build_trainer`: the optimizer, its schedule and the jitted step on the mesh.
      6. `resume_check.check_resume` (on resume): the config must compute what it did.
      7. `_restore_or_initialise`: the checkpoint, or fresh (pretrained) weights.
      8. `_write_run_metadata`: `config.gin`, `model.json` and the vocabulary (process 0).
      9. `_make_batches`: this host's rows of the global batches from the start step on.
      10. `_train_loop`: step, non-finite check, log (`metrics_log.StepLogger`),
          checkpoint; SIGTERM / SIGINT save and stop (`step_guards`); the peers' progress
          and the step watchdog (`watchdog`).

    Args:
      model_dir: where checkpoints, `config.gin`, `model.json` and metrics go.
      train_steps: total optimizer steps (a resumed run stops at the same step).
      batch_size: the GLOBAL number of pairs per step; every pair is a negative for every
        other pair in it, across all devices and hosts.
      data: the training pairs.
      model_config, loss_config: default to the gin-bound `EncoderConfig()` / `LossConfig()`.
      seed: parameter initialisation and dropout seed.
      log_every_steps, checkpoint_every_steps, keep_checkpoints, progress_bar: cadence.
      grad_cache_chunk_size: pairs per encoder pass with gradient caching (None: the whole
        batch at once). Same loss and gradients, activation memory of one chunk: the way
        to a batch far larger than memory allows (`cpt_jax.grad_cache`).
      init_from: start step 0 from pretrained encoder weights (gin macro `INIT_FROM`):
        'minilm', a Hugging Face BERT directory or a cpt-jax model directory (see
        `cpt_jax.pretrained.load`). The optimizer and the logit scale start fresh. The gin
        `EncoderConfig` must describe the same architecture (an error lists what differs);
        the data is tokenised with the pretrained vocabulary. A resumed run does not load
        it: it continues its own weights with the vocabulary saved in `model_dir`.
      allow_config_change: resume even though bindings that change what is computed (the
        learning rate, the data, the model...) differ from the directory's `config.gin`;
        the old file is kept as `config.until_step_<N>.gin`. Without it such a resume is
        an error listing the differences (`cpt_jax.resume_check`).
      max_nonfinite_steps: how many steps with a non-finite loss or gradient norm to skip
        (their updates are never applied) before stopping; 0 stops at the first.
      step_timeout_seconds: stop the process (exit status 124, with every process's
        progress and every thread's stack on stderr) when no step finishes for this long
        after the first: a hang inside a collective. None: wait forever. Dead or stopped
        peers are caught sooner by the heartbeat timeout (`--heartbeat_timeout`).

    Returns:
      The final train state.

    Raises:
      step_guards.NonFiniteError: a non-finite step beyond `max_nonfinite_steps`; no state
        after the last finite step is saved.
      step_guards.Preempted: SIGTERM or SIGINT; the step reached was saved.
    """
    # Random bits that shard like the arrays they fill (big_vision's setting).
    jax.config.update("jax_threefry_partitionable", True)
    model_config = model_config or EncoderConfig()
    loss_config = loss_config or LossConfig()
    os.makedirs(model_dir, exist_ok=True)
    is_chief = jax.process_index() == 0

    mesh, rules = _set_up_mesh(batch_size)
    peers = PeerMonitor.for_this_job()
    ckpt = checkpoints.Checkpointer(
        model_dir, save_interval_steps=checkpoint_every_steps, max_to_keep=keep_checkpoints
    )
    try:
        if peers is not None:
            peers.start()
        resume_step = ckpt.latest_step()
        initial = None
        if init_from is not None and resume_step is None:
            initial = _load_pretrained(init_from, model_config, log=is_chief)
        data, tokenizer = _resolve_vocabulary(
            data, model_config, model_dir, init_from=init_from, initial=initial
        )
        trainer, schedule = _build_trainer(
            model_config, loss_config, train_steps, mesh, rules, seed, grad_cache_chunk_size
        )
        if resume_step is not None:
            resume_check.check_resume(
                model_dir,
                resume_step,
                gin.operative_config_str(),
                allow_change=allow_config_change,
                keep_old=is_chief,
            )
        state = _restore_or_initialise(ckpt, trainer, resume_step, seed, initial, init_from)
        if is_chief:
            source = _weights_source(model_dir, resume_step, init_from, initial)
            _write_run_metadata(model_dir, model_config, loss_config, data, tokenizer, source)
        start_step = int(jax.device_get(state.step))
        batches = _make_batches(data, mesh, batch_size, start_step)
        with StepLogger(
            model_dir,
            start_step=start_step,
            total_steps=train_steps,
            pairs_per_step=batch_size,
            log_every=log_every_steps,
            schedule=schedule,
            enabled=is_chief,
            progress_bar=progress_bar,
        ) as logger:
            guard = NonFiniteGuard(max_nonfinite_steps)
            watchdog = StepWatchdog(step_timeout_seconds, peers and peers.describe)
            with watchdog:
                return _train_loop(
                    trainer, state, batches, ckpt, logger, train_steps, guard, watchdog, peers
                )
    except Exception as error:
        if peers is not None and not isinstance(error, Preempted):
            # A collective that failed says little about why: name the silent peer.
            peers.wait_for_signs_of_life(1.5 * peers.interval_s)
            print(f"Where each process was:\n{peers.describe()}", file=sys.stderr, flush=True)
        raise
    finally:
        if peers is not None:
            peers.stop()
        ckpt.close()


# -- the stages, in the order they run ---------------------------------------------------
def _set_up_mesh(batch_size: int) -> tuple[jax.sharding.Mesh, partitioning.LogicalRules]:
    """The gin-configured mesh over all devices of all hosts and its logical-axis rules;
    the global batch splits over ('data', 'fsdp') and over the processes."""
    mesh = partitioning.make_mesh()
    rules = partitioning.logical_axis_rules()
    num_shards = partitioning.num_batch_shards(mesh)
    if batch_size % num_shards or batch_size % jax.process_count():
        raise ValueError(
            f"BATCH_SIZE={batch_size} must divide evenly over {num_shards} batch shards and "
            f"{jax.process_count()} processes"
        )
    return mesh, rules


def _load_pretrained(init_from: str, model_config: EncoderConfig, log: bool):
    """The pretrained model `init_from` names (`pretrained.load`), checked against the gin
    `EncoderConfig`."""
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


def _resolve_vocabulary(
    data: PairData, model_config: EncoderConfig, model_dir: str, *, init_from, initial
):
    """`(data, tokenizer)`: `data` with the vocabulary that tokenises it, and that vocabulary,
    checked against `model_config` (a mismatched vocabulary would index garbage).

    With `init_from`, the vocabulary is the pretrained model's: `initial`'s on a fresh run,
    saved into `model_dir` for every host to read; on resume (`initial` None) that saved
    copy, named by `model.json`.
    """
    if init_from is not None:
        data = _with_vocabulary(data, _pretrained_vocabulary_path(model_dir, initial))
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
    return data, tokenizer


def _pretrained_vocabulary_path(model_dir: str, initial) -> str:
    """Where in `model_dir` the pretrained vocabulary is: written there now from `initial`
    (process 0, the others wait), or, with `initial` None (a resumed run), where the first
    run saved it."""
    if initial is None:
        name = checkpoints.read_model_metadata(model_dir)["vocabulary_file"]
        return checkpoints.model_file(model_dir, name)
    path = os.path.join(model_dir, VOCABULARY_FILES[type(initial.tokenizer)])
    if jax.process_index() == 0:
        files.write_bytes_atomic(path, initial.tokenizer.serialized_model)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("pretrained vocabulary written")
    return path


def _with_vocabulary(data: PairData, path: str) -> PairData:
    """`data` tokenised with the pretrained vocabulary at `path`, or the same `data` if it
    names that very vocabulary (by content) already."""
    if data.vocabulary_path is None:
        return dataclasses.replace(data, vocabulary_path=path)
    with open(data.vocabulary_path, "rb") as mine, open(path, "rb") as pretrained_vocabulary:
        if mine.read() != pretrained_vocabulary.read():
            raise ValueError(
                f"PairData.vocabulary_path={data.vocabulary_path} is not the vocabulary of "
                "INIT_FROM's model; leave it unset to use the pretrained vocabulary"
            )
    return data


def _build_trainer(
    model_config, loss_config, train_steps, mesh, rules, seed, grad_cache_chunk_size
) -> tuple[Trainer, Callable[[int], float]]:
    """The trainer (gin's `make_optimizer` for `train_steps`) and its learning-rate
    schedule (for the log)."""
    optimizer, schedule = make_optimizer(train_steps)
    trainer = Trainer(
        model_config=model_config,
        loss_config=loss_config,
        optimizer=optimizer,
        mesh=mesh,
        rules=rules,
        dropout_seed=seed,
        grad_cache_chunk_size=grad_cache_chunk_size,
    )
    return trainer, schedule


def _restore_or_initialise(
    ckpt: checkpoints.Checkpointer, trainer: Trainer, resume_step, seed, initial, init_from
) -> TrainState:
    """The state of the newest checkpoint that restores (`resume_step` unless it is damaged);
    with none, a fresh state from `seed`, its encoder the pretrained `initial`'s when given."""
    if resume_step is not None:
        step, state = ckpt.restore_latest(trainer.abstract_state)
        print(f"Resumed from {ckpt.directory} at step {step}", flush=True)
        return state
    state = trainer.init_state(seed)
    if initial is not None:
        encoder = _place_like(initial.params, state.params["encoder"])
        state = state.replace(params={**state.params, "encoder": encoder})
        print(f"Initialised the encoder from {init_from}", flush=True)
    return state


def _place_like(values, like):
    """Host numpy `values` as global arrays with the shardings of the arrays in `like`
    (each host holds the whole values and gives each of its devices its slice)."""

    def place(value, target):
        value = np.asarray(value, target.dtype)
        if value.shape != target.shape:
            raise ValueError(f"pretrained shape {value.shape} != model shape {target.shape}")
        return jax.make_array_from_callback(value.shape, target.sharding, lambda i: value[i])

    return jax.tree.map(place, values, like)


def _weights_source(model_dir: str, resume_step, init_from, initial) -> dict | None:
    """Where the run's initial weights came from, for `model.json`: `INIT_FROM`'s model on a
    fresh run, the first run's record on resume (the pretrained model is not loaded then)."""
    if initial is not None:
        return {"init_from": init_from, **initial.source}
    path = os.path.join(model_dir, checkpoints.MODEL_METADATA_FILE)
    if resume_step is None or not os.path.exists(path):
        return None
    return checkpoints.read_model_metadata(model_dir).get("initialized_from")


def _write_run_metadata(
    model_dir, model_config, loss_config: LossConfig, data: PairData, tokenizer, source
) -> None:
    """`model.json` and the vocabulary (a self-describing model directory), and gin's
    operative config as `config.gin` (what a resumed run is checked against)."""
    checkpoints.write_model_metadata(
        model_dir,
        model_config=model_config.to_dict(),
        vocabulary=tokenizer.serialized_model,
        vocabulary_file=VOCABULARY_FILES[type(tokenizer)],
        sequence_lengths=data.sequence_lengths,
        delimiters=delimiter_names(tokenizer),
        source=source,
        embedding_sizes=loss_config.embedding_sizes(model_config.embedding_dim),
        log_scale_shape=loss_config.log_scale_shape,
    )
    files.write_bytes_atomic(
        os.path.join(model_dir, checkpoints.CONFIG_FILE), gin.operative_config_str().encode()
    )


def _make_batches(data: PairData, mesh, batch_size: int, start_step: int) -> Iterator[dict]:
    """This host's rows of every global batch from `start_step` on: the rows that its
    devices hold (`multihost.host_batch_rows`)."""
    first_row, end_row = multihost.host_batch_rows(mesh, batch_size)
    per_host_batch = end_row - first_row
    return data.batches(
        batch_size=per_host_batch,
        start_step=start_step,
        shard_index=first_row // per_host_batch,
        num_shards=batch_size // per_host_batch,
    )


def _train_loop(
    trainer: Trainer,
    state: TrainState,
    batches: Iterator[dict],
    ckpt: checkpoints.Checkpointer,
    logger: StepLogger,
    train_steps: int,
    nonfinite: NonFiniteGuard,
    watchdog: StepWatchdog,
    peers: PeerMonitor | None,
) -> TrainState:
    """Steps from `state` to `train_steps`: a global batch, the step, the non-finite check,
    the log, and a checkpoint on the interval, at the end, or when preempted (then
    `Preempted` is raised). A step is logged before it is saved, so a kill between the two
    loses neither (the resumed run logs the steps after its checkpoint again). `peers`
    (multi-process) hears what the loop is doing, `watchdog` when a step is done."""
    progress = peers.set_progress if peers is not None else lambda step, doing: None
    with PreemptionWatch() as preemption:
        for step in range(int(jax.device_get(state.step)) + 1, train_steps + 1):
            progress(step, READING)
            batch = partitioning.host_local_batch_to_global(next(batches), trainer.mesh)
            progress(step, COMPUTING)
            # Implicit host<->device copies inside the step would be silent slowdowns.
            with jax.transfer_guard("disallow"):
                state, metrics = trainer.train_step(state, batch)
            nonfinite.after_step(step, metrics)
            logger.step_done(step, metrics)
            preempted = preemption.requested(step)
            if preempted or step == train_steps or ckpt.should_save(step):
                progress(step, SAVING)
                nonfinite.check_all()
                ckpt.save(step, state, force=True)
            watchdog.step_done(step)
            if preempted:
                ckpt.wait()
                raise Preempted(step, preemption.signum)
    return state


# -- command line --------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    """`python -m cpt_jax.train`: parses the command line (`gin_cli`), joins the
    multi-process job if asked, parses gin and trains."""
    args = gin_cli.parse_args(sys.argv[1:] if argv is None else argv, description=__doc__)
    # Before anything touches a device: every host's devices join one job.
    multihost.initialize(args.distributed)
    gin_cli.parse_gin(args.gin_files, args.gin_bindings, args.gin_search_paths)
    try:
        state = train()
    except Preempted as stop:
        print(f"Preempted: {stop}", file=sys.stderr, flush=True)
        sys.exit(stop.exit_code)
    except Exception as error:
        if jax.process_count() > 1:
            multihost.abandon_job(error)
        raise
    if jax.process_index() == 0:
        print(f"Finished at step {int(jax.device_get(state.step))}.", flush=True)


if __name__ == "__main__":
    main()
