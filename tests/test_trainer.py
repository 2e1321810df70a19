"""The trainer's jitted step (`cpt_jax.trainer`, `cpt_jax.grad_cache`): shardings, determinism,
multi-device equivalence, gradient caching, metrics, optimizer."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cpt_jax import grad_cache, losses, partitioning
from cpt_jax.models import LOGICAL_AXIS_NAMES, EncoderConfig
from cpt_jax.trainer import STEP_METRICS, LossConfig, Trainer, make_optimizer

CONFIG = EncoderConfig(
    vocab_size=128, num_layers=2, d_model=32, num_heads=4, d_ff=64, max_length=32, dropout_rate=0.1
)


def make_trainer(
    mesh,
    config=CONFIG,
    parameter_sharding="data_parallel",
    grad_cache_chunk_size=None,
    **loss_kwargs,
):
    optimizer, _ = make_optimizer(10, learning_rate=1e-3, warmup_steps=2)
    return Trainer(
        model_config=config,
        loss_config=LossConfig(**loss_kwargs),
        optimizer=optimizer,
        mesh=mesh,
        rules=partitioning.logical_axis_rules(parameter_sharding),
        dropout_seed=3,
        grad_cache_chunk_size=grad_cache_chunk_size,
    )


def synthetic_batch(step, batch_size=16, query_length=8, document_length=12, vocab=128):
    rng = np.random.default_rng(step)
    queries = rng.integers(3, vocab, (batch_size, query_length)).astype(np.int32)
    documents = rng.integers(3, vocab, (batch_size, document_length)).astype(np.int32)
    # Right padding of varying length, as the feature converter produces.
    for row, n in enumerate(rng.integers(2, query_length, batch_size)):
        queries[row, n:] = 0
    for row, n in enumerate(rng.integers(2, document_length, batch_size)):
        documents[row, n:] = 0
    ids = np.arange(batch_size, dtype=np.int32)
    return {"queries": queries, "documents": documents, "query_ids": ids, "document_ids": ids}


def run_steps(mesh, num_steps=3, **kwargs):
    trainer = make_trainer(mesh, **kwargs)
    state = trainer.init_state(seed=0)
    losses = []
    for step in range(num_steps):
        batch = partitioning.host_local_batch_to_global(synthetic_batch(step), mesh)
        state, metrics = trainer.train_step(state, batch)
        losses.append(float(metrics["loss"]))
    return losses, state, trainer


def test_every_logical_axis_has_a_rule():
    for sharding in ("data_parallel", "fsdp"):
        ruled = {name for name, _ in partitioning.logical_axis_rules(sharding)}
        assert set(LOGICAL_AXIS_NAMES) <= ruled, set(LOGICAL_AXIS_NAMES) - ruled


def test_make_mesh_sizes_and_errors():
    mesh = partitioning.make_mesh(data=4, model=2)
    assert dict(mesh.shape) == {"data": 4, "fsdp": 1, "model": 2}
    assert partitioning.num_batch_shards(mesh) == 4
    with pytest.raises(ValueError, match="need 6 devices"):
        partitioning.make_mesh(data=3, model=2)
    with pytest.raises(ValueError, match="at most one axis"):
        partitioning.make_mesh(data=-1, model=-1)
    with pytest.raises(ValueError, match="unknown parameter_sharding"):
        partitioning.logical_axis_rules("zero3")


def test_losses_equal_on_one_device_and_on_meshes():
    """Three steps (dropout on) give the same losses on 1 device, 8x1x1 and 4x1x2 meshes."""
    devices = jax.devices()
    reference, ref_state, _ = run_steps(partitioning.make_mesh(devices=devices[:1]))
    for shape in [dict(data=8), dict(data=4, model=2), dict(data=2, fsdp=2, model=2)]:
        sharding = "fsdp" if shape.get("fsdp", 1) > 1 else "data_parallel"
        losses, state, _ = run_steps(partitioning.make_mesh(**shape), parameter_sharding=sharding)
        np.testing.assert_allclose(losses, reference, rtol=1e-5, err_msg=str(shape))
        for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref_state.params)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=2e-6)
    assert reference[-1] < reference[0] or np.isfinite(reference).all()


# Expected specs of a few parameters of each kind: (parameter path, mesh, rules) -> spec.
R = None  # a replicated dimension
LANDING = {
    "data_parallel": (
        dict(data=8),
        {
            "layer_0/attention/query_kernel": (R, R, R),
            "layer_0/mlp/wi/kernel": (R, R),
            "token_embedding": (R, R),
            "layer_0/attention_norm/scale": (R,),
        },
    ),
    "tensor_parallel": (
        dict(data=4, model=2),
        {
            "layer_0/attention/query_kernel": (R, "model", R),
            "layer_0/attention/query_bias": ("model", R),
            "layer_0/attention/out_kernel": ("model", R, R),
            "layer_0/mlp/wi/kernel": (R, "model"),
            "layer_0/mlp/wo/kernel": ("model", R),
            "token_embedding": ("model", R),
            "layer_0/attention_norm/scale": (R,),
        },
    ),
    "fsdp": (
        dict(data=2, fsdp=2, model=2),
        {
            "layer_0/attention/query_kernel": ("fsdp", "model", R),
            "layer_0/attention/out_kernel": ("model", R, "fsdp"),
            "layer_0/mlp/wi/kernel": ("fsdp", "model"),
            "layer_0/mlp/wo/kernel": ("model", "fsdp"),
            "token_embedding": ("model", "fsdp"),
            "position_embedding": (R, "fsdp"),
            "layer_0/attention_norm/scale": ("fsdp",),
        },
    ),
}


@pytest.mark.parametrize("mode", list(LANDING))
def test_parameters_and_optimizer_state_land_with_the_intended_shardings(mode):
    shape, expected = LANDING[mode]
    mesh = partitioning.make_mesh(**shape)
    rules = "fsdp" if mode == "fsdp" else "data_parallel"
    state = make_trainer(mesh, parameter_sharding=rules).init_state(seed=0)
    params = state.params["encoder"]
    for path, spec in expected.items():
        leaf = params
        for key in path.split("/"):
            leaf = leaf[key]
        want = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(*spec))
        assert leaf.sharding.is_equivalent_to(want, leaf.ndim), (path, leaf.sharding.spec, spec)
        # Each device holds exactly its share of the parameter.
        divisor = int(np.prod([mesh.shape[a] for a in spec if a is not None]))
        assert leaf.addressable_shards[0].data.size * divisor == leaf.size, path
    # Adam's moments mirror the parameters' shardings (FSDP shards optimizer state too).
    mu = state.opt_state[1][0].mu["encoder"]
    for p, m in zip(jax.tree.leaves(params), jax.tree.leaves(mu)):
        assert m.sharding.is_equivalent_to(p.sharding, p.ndim)


def test_step_is_deterministic_and_dropout_keys_follow_the_step():
    mesh = partitioning.make_mesh(devices=jax.devices()[:2])
    a, _, _ = run_steps(mesh, num_steps=2)
    b, _, _ = run_steps(mesh, num_steps=2)
    assert a == b
    # Same batch at two different steps: different dropout masks -> different losses.
    trainer = make_trainer(mesh)
    state = trainer.init_state(seed=0)
    batch = partitioning.host_local_batch_to_global(synthetic_batch(0), mesh)
    loss = jax.jit(lambda step: trainer.loss_and_metrics(
        state.params, batch, jax.random.fold_in(jax.random.key(3), step))[0])  # fmt: skip
    with jax.set_mesh(mesh):
        assert float(loss(0)) != float(loss(1))


def test_frozen_temperature_stays_fixed():
    mesh = partitioning.make_mesh(devices=jax.devices()[:1])
    _, state, _ = run_steps(mesh, learn_logit_scale=False, initial_logit_scale=50.0)
    np.testing.assert_allclose(float(np.exp(state.params["log_scale"])), 50.0, rtol=1e-6)
    _, state, _ = run_steps(mesh, learn_logit_scale=True, initial_logit_scale=50.0)
    assert abs(float(np.exp(state.params["log_scale"])) - 50.0) > 1e-4


def test_optimizer_schedule_and_decay_mask():
    optimizer, schedule = make_optimizer(100, learning_rate=1.0, warmup_steps=10)
    assert float(schedule(0)) == 0.0
    np.testing.assert_allclose(float(schedule(10)), 1.0, rtol=1e-6)
    assert float(schedule(100)) < 1e-6
    params = {
        "w": jax.numpy.ones((2, 2)),
        "b": jax.numpy.ones((2,)),
        "log_scale": jax.numpy.ones(()),
    }
    state = optimizer.init(params)
    zero = jax.tree.map(jax.numpy.zeros_like, params)
    _, state = optimizer.update(zero, state, params)  # step 0 has learning rate 0
    updates, _ = optimizer.update(zero, state, params)
    # With zero gradients only weight decay moves parameters: matrices only.
    assert float(abs(updates["w"]).sum()) > 0
    assert float(abs(updates["b"]).sum()) == 0 and float(abs(updates["log_scale"])) == 0
    assert isinstance(optimizer, optax.GradientTransformation)


# -- gradient caching --------------------------------------------------------------------------
def loss_and_grads(trainer, params, batch, step=0):
    """The jitted (loss, grads) of one batch, dropout on (key of `step`)."""
    key = jax.random.fold_in(jax.random.key(3), step)

    def f(params, batch):
        loss, _, grads = trainer.loss_and_grads(params, batch, key)
        return loss, grads

    with jax.set_mesh(trainer.mesh):
        return jax.jit(f)(params, batch)


def assert_same_loss_and_grads(got, want, where):
    np.testing.assert_allclose(float(got[0]), float(want[0]), rtol=1e-5, err_msg=where)
    flat_got = jax.tree_util.tree_flatten_with_path(got[1])[0]
    for (path, g), w in zip(flat_got, jax.tree.leaves(want[1])):
        # Gradients are sums of per-chunk terms: float32 reassociation, nothing more.
        np.testing.assert_allclose(
            np.asarray(g), np.asarray(w), rtol=1e-4, atol=1e-6, err_msg=where + keystr(path)
        )


def keystr(path):
    return jax.tree_util.keystr(path)


@pytest.mark.parametrize(
    "shape,chunk_sizes",
    [
        (dict(data=1), (1, 4, 8)),  # one device: single-pair chunks up to half the batch
        (dict(data=4, model=2), (4, 8)),  # each chunk spread over the 4 batch shards
        (dict(data=2, fsdp=2, model=2), (4,)),
    ],
)
def test_grad_cache_equals_plain_step_with_dropout(shape, chunk_sizes):
    """Loss and every parameter gradient (temperature included) of the gradient-cached step
    equal the plain step's, with dropout on and duplicate ids masked, on each mesh."""
    devices = jax.devices()[: int(np.prod(list(shape.values())))]
    mesh = partitioning.make_mesh(**shape, devices=devices)
    sharding = "fsdp" if shape.get("fsdp", 1) > 1 else "data_parallel"
    plain = make_trainer(mesh, parameter_sharding=sharding)
    params = plain.init_state(seed=0).params
    host_batch = synthetic_batch(0)
    host_batch["query_ids"][[3, 9]] = 42  # a duplicate query text: masked in both forms
    batch = partitioning.host_local_batch_to_global(host_batch, mesh)
    want = loss_and_grads(plain, params, batch)
    # Dropout matters here: without it (or with masks that differ between passes) the
    # gradients would not match.
    deterministic = make_trainer(mesh, config=dataclasses.replace(CONFIG, dropout_rate=0.0))
    assert abs(float(loss_and_grads(deterministic, params, batch)[0]) - float(want[0])) > 1e-4
    for chunk in chunk_sizes:
        cached = make_trainer(mesh, parameter_sharding=sharding, grad_cache_chunk_size=chunk)
        got = loss_and_grads(cached, params, batch)
        assert_same_loss_and_grads(got, want, f"{shape} chunk={chunk}")


def test_grad_cache_train_steps_equal_plain_steps_on_8_devices():
    mesh = partitioning.make_mesh(data=8)
    plain, plain_state, _ = run_steps(mesh)
    cached, cached_state, _ = run_steps(mesh, grad_cache_chunk_size=8)
    np.testing.assert_allclose(cached, plain, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(cached_state.params), jax.tree.leaves(plain_state.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=2e-6)


def test_grad_cache_chunks_are_spread_over_every_device():
    """Each chunk holds `chunk / n` rows of every one of the n batch shards, so every device
    works on every chunk; `from_chunks` inverts `to_chunks`."""
    mesh = partitioning.make_mesh(data=4, model=2)
    rows = partitioning.host_local_batch_to_global({"r": np.arange(32, dtype=np.int32)}, mesh)["r"]
    with jax.set_mesh(mesh):
        chunks = jax.jit(lambda x: grad_cache.to_chunks(x, mesh, 8))(rows)
        back = jax.jit(lambda x: grad_cache.from_chunks(x, mesh))(chunks)
    np.testing.assert_array_equal(np.asarray(back), np.arange(32))
    # 32 rows over 4 shards: shard i holds rows 8i..8i+7; chunk j takes 2 of each.
    expected = np.array([[8 * i + 2 * j + t for i in range(4) for t in range(2)] for j in range(4)])
    np.testing.assert_array_equal(np.asarray(chunks), expected)
    for shard in chunks.addressable_shards:
        # Every device holds a [4 chunks, 2 rows] block: a slice of every chunk.
        assert shard.data.shape == (4, 2), shard.data.shape
        # ... and those rows are its own batch shard's: the reshapes moved no data.
        owners = {int(r) // 8 for r in np.asarray(shard.data).ravel()}
        assert len(owners) == 1, (shard.device, owners)


def test_grad_cache_bounds_activation_memory():
    """XLA's accounting of the compiled step: with gradient caching the temporaries of a
    batch of 256 stay near those of one 32-pair chunk, well under the plain step's."""
    config = dataclasses.replace(CONFIG, d_model=64, d_ff=256, max_length=64)
    mesh = partitioning.make_mesh(devices=jax.devices()[:1])

    def temp_bytes(chunk):
        trainer = make_trainer(mesh, config=config, grad_cache_chunk_size=chunk)
        tokens = jax.ShapeDtypeStruct((256, 64), np.int32)
        ids = jax.ShapeDtypeStruct((256,), np.int32)
        batch = {"queries": tokens, "documents": tokens, "query_ids": ids, "document_ids": ids}
        with jax.set_mesh(mesh):
            lowered = jax.jit(trainer._train_step).lower(trainer.abstract_state, batch)
        return lowered.compile().memory_analysis().temp_size_in_bytes

    plain, cached = temp_bytes(None), temp_bytes(32)
    assert cached < plain / 3, (cached, plain)


def test_bad_grad_cache_chunk_is_named():
    mesh = partitioning.make_mesh(data=4, devices=jax.devices()[:4])
    trainer = make_trainer(mesh, grad_cache_chunk_size=6)  # not a multiple of 4 shards
    state = trainer.init_state(seed=0)
    batch = partitioning.host_local_batch_to_global(synthetic_batch(0), mesh)
    with pytest.raises(ValueError, match="grad_cache_chunk_size=6 must be a positive multiple"):
        trainer.train_step(state, batch)


# -- hard negatives ------------------------------------------------------------------------
def with_negatives(batch, num_negatives=2, seed=7):
    """`synthetic_batch` plus `[b, N, Ld]` hard negatives with their own ids."""
    rng = np.random.default_rng(seed)
    b, length = batch["documents"].shape
    negatives = rng.integers(3, 128, (b, num_negatives, length)).astype(np.int32)
    negatives[:, :, length // 2 :] = 0
    ids = (1000 + np.arange(b * num_negatives, dtype=np.int32)).reshape(b, num_negatives)
    return {**batch, "negatives": negatives, "negative_ids": ids}


def test_hard_negatives_in_the_step_match_the_float64_reference():
    """Loss of a batch with hard negatives (dropout off) equals the float64 reference
    computed from the same encoder's embeddings; the negatives raise the loss."""
    from test_losses import reference

    mesh = partitioning.make_mesh(data=4, devices=jax.devices()[:4])
    config = dataclasses.replace(CONFIG, dropout_rate=0.0)
    trainer = make_trainer(mesh, config=config)
    params = trainer.init_state(seed=0).params
    host_batch = with_negatives(synthetic_batch(0))
    batch = partitioning.host_local_batch_to_global(host_batch, mesh)
    loss, _, _ = loss_and_grads_with_aux(trainer, params, batch)
    encode = lambda tokens: np.asarray(trainer.encode(params["encoder"], tokens), np.float64)
    q, d = encode(host_batch["queries"]), encode(host_batch["documents"])
    b, n, length = host_batch["negatives"].shape
    negatives = encode(host_batch["negatives"].reshape(b * n, length)).reshape(b, n, -1)
    scale = float(trainer.logit_scale(params))
    want = reference(q, d, scale, negatives)[0]
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)
    assert want > reference(q, d, scale)[0] + 1e-3


def loss_and_grads_with_aux(trainer, params, batch):
    key = jax.random.key(5)
    with jax.set_mesh(trainer.mesh):
        return jax.jit(lambda p, b: trainer.loss_and_grads(p, b, key))(params, batch)


def test_grad_cache_equals_plain_step_with_hard_negatives():
    """Gradient caching re-encodes the negatives chunk by chunk too (dropout on, a
    negative's id duplicating a document's is masked in both)."""
    mesh = partitioning.make_mesh(data=4, model=2)
    plain = make_trainer(mesh)
    params = plain.init_state(seed=0).params
    host_batch = with_negatives(synthetic_batch(1))
    host_batch["negative_ids"][2, 1] = host_batch["document_ids"][2]
    batch = partitioning.host_local_batch_to_global(host_batch, mesh)
    want = loss_and_grads(plain, params, batch)
    without = loss_and_grads(plain, params, {k: v for k, v in batch.items() if "neg" not in k})
    assert abs(float(want[0]) - float(without[0])) > 1e-3
    cached = make_trainer(mesh, grad_cache_chunk_size=8)
    assert_same_loss_and_grads(loss_and_grads(cached, params, batch), want, "negatives")


def test_step_metrics_come_from_the_loss_pass_plain_and_cached():
    """The step's metrics (read off the loss's own logits) equal the metrics of the same
    embeddings scored separately (`losses.sharded_contrastive_metrics`), with hard negatives
    and a duplicate query masked; the gradient-cached step's equal the plain step's."""
    mesh = partitioning.make_mesh(data=4, model=2)
    host_batch = with_negatives(synthetic_batch(2))
    host_batch["query_ids"][[3, 9]] = 42
    batch = partitioning.host_local_batch_to_global(host_batch, mesh)
    steps = {}
    for chunk in (None, 8):
        trainer = make_trainer(mesh, grad_cache_chunk_size=chunk)
        steps[chunk] = jax.device_get(trainer.train_step(trainer.init_state(seed=0), batch)[1])
    assert set(steps[None]) == set(STEP_METRICS)

    params = trainer.init_state(seed=0).params
    key = jax.random.fold_in(jax.random.key(3), 0)  # the step's dropout key at step 0

    def scored_separately(params, batch):
        ids = trainer._row_ids(host_batch["queries"].shape[0])
        queries, documents, negatives = (
            trainer._encode_side(params["encoder"], tokens, side_key, ids)
            for tokens, side_key in trainer._sides_and_keys(batch, key)
        )
        return losses.sharded_contrastive_metrics(
            queries,
            documents,
            logit_scale=trainer.logit_scale(params),
            mesh=mesh,
            batch_axes=partitioning.BATCH_AXES,
            negatives=negatives,
            **trainer._loss_options(batch),
        )

    with jax.set_mesh(mesh):
        want = jax.device_get(jax.jit(scored_separately)(params, batch))
    assert 0 < want["accuracy_q2d"] < 1, want
    for chunk, metrics in steps.items():
        for name, value in want.items():
            np.testing.assert_allclose(metrics[name], value, rtol=1e-5, err_msg=f"{chunk} {name}")


def test_logit_scale_parameter_is_clamped_after_every_update():
    """CLIP clamps the parameter, not only the forward pass: a log-scale pushed above
    log(max) would get a zero gradient there and the temperature could never come back."""
    mesh = partitioning.make_mesh(data=8)
    # Only the scale moves, by steps that overshoot the bound by far.
    labels = lambda params: {"encoder": jax.tree.map(lambda _: "frozen", params["encoder"]),
                             "log_scale": "scale"}  # fmt: skip
    optimizer = optax.multi_transform({"scale": optax.sgd(1e4), "frozen": optax.set_to_zero()},
                                      labels)  # fmt: skip
    trainer = Trainer(
        model_config=CONFIG,
        loss_config=LossConfig(initial_logit_scale=99.0, max_logit_scale=100.0),
        optimizer=optimizer,
        mesh=mesh,
        rules=partitioning.logical_axis_rules(),
    )
    state = trainer.init_state(seed=0)
    raw = []
    for step in range(3):
        easy = synthetic_batch(step)  # each document is its query: a sharper scale helps
        easy["documents"] = np.pad(easy["queries"], ((0, 0), (0, 4)))
        batch = partitioning.host_local_batch_to_global(easy, mesh)
        state, metrics = trainer.train_step(state, batch)
        raw.append(float(state.params["log_scale"]))
    assert max(raw) <= np.float32(np.log(100.0)), raw
    assert raw[0] == np.float32(np.log(100.0))  # the first update pushed it to the bound


def test_a_non_finite_step_leaves_the_state_unchanged():
    """A step whose update is NaN (here from the learning rate at update 2) applies nothing:
    parameters and optimizer state stay bit for bit, the step counts, `nonfinite` says so;
    the other steps are unaffected."""
    mesh = partitioning.make_mesh(data=8)
    poisoned = optax.chain(
        make_optimizer(10, learning_rate=1e-3, warmup_steps=2)[0],
        optax.scale_by_schedule(lambda count: jnp.where(count == 1, jnp.nan, 1.0)),
    )
    trainer = dataclasses.replace(make_trainer(mesh), optimizer=poisoned)
    state = trainer.init_state(seed=0)
    flags, snapshots = [], [jax.device_get((state.params, state.opt_state))]
    for step in range(3):
        batch = partitioning.host_local_batch_to_global(synthetic_batch(step), mesh)
        state, metrics = trainer.train_step(state, batch)
        flags.append(float(metrics["nonfinite"]))
        snapshots.append(jax.device_get((state.params, state.opt_state)))
    assert flags == [0.0, 1.0, 1.0]  # the schedule's count stays at 1: the state is rolled back
    assert int(state.step) == 3
    for before, after in zip(jax.tree.leaves(snapshots[1]), jax.tree.leaves(snapshots[3])):
        np.testing.assert_array_equal(before, after)
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(snapshots[3]))
    changed = [not np.array_equal(a, b) for a, b in zip(*map(jax.tree.leaves, snapshots[:2]))]
    assert any(changed)  # the first, finite step did update


# -- Matryoshka sizes ------------------------------------------------------------------------
MATRYOSHKA = dict(matryoshka_dims=(32, 16, 8), matryoshka_weights=(1.0, 1.0, 2.0))


def test_matryoshka_step_with_a_scale_per_size_equal_on_one_device_and_grad_cached():
    """The Matryoshka loss and its gradients with a scale per size (the shared scale is the
    loss tests' case) are the same on one device and gradient-cached on a 4x2 mesh (the
    plain mesh step: the loss tests); the step logs each size, and its loss is their
    weighted mean."""
    options = dict(MATRYOSHKA, logit_scale_per_size=True)
    one = make_trainer(partitioning.make_mesh(data=1, devices=jax.devices()[:1]), **options)
    params = jax.device_get(one.init_state(seed=0).params)  # host arrays: usable on any mesh
    assert params["log_scale"].shape == (3,)
    host_batch = synthetic_batch(0)
    want = loss_and_grads(
        one, params, partitioning.host_local_batch_to_global(host_batch, one.mesh)
    )
    mesh = partitioning.make_mesh(data=4, model=2)
    batch = partitioning.host_local_batch_to_global(host_batch, mesh)
    cached = make_trainer(mesh, grad_cache_chunk_size=4, **options)
    assert_same_loss_and_grads(loss_and_grads(cached, params, batch), want, "grad cache")
    _, metrics = cached.train_step(cached.init_state(seed=0), batch)
    per_size = [float(metrics[f"loss@{size}"]) for size in (32, 16, 8)]
    weights = MATRYOSHKA["matryoshka_weights"]
    mean = sum(w * loss for w, loss in zip(weights, per_size)) / sum(weights)
    np.testing.assert_allclose(float(metrics["loss"]), mean, rtol=1e-5)
    assert len(set(per_size)) == 3  # the prefixes are scored apart
    assert all(float(metrics[f"logit_scale@{size}"]) > 0 for size in (32, 16, 8))


def test_matryoshka_loss_config_is_checked():
    assert LossConfig(matryoshka_dims=[32, 16]).matryoshka_dims == (32, 16)  # gin gives lists
    assert LossConfig(matryoshka_dims=(32, 16)).embedding_sizes(32) == (32, 16)
    assert LossConfig().embedding_sizes(32) == (32,)
    assert LossConfig(matryoshka_dims=(32, 16), logit_scale_per_size=True).log_scale_shape == (2,)
    with pytest.raises(ValueError, match="decrease strictly"):
        LossConfig(matryoshka_dims=(16, 32))
    with pytest.raises(ValueError, match="need matryoshka_dims"):
        LossConfig(logit_scale_per_size=True)
    with pytest.raises(ValueError, match="64, the embedding width"):
        LossConfig(matryoshka_dims=(128, 16)).embedding_sizes(64)
