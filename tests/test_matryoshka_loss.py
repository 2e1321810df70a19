"""The Matryoshka loss (`matryoshka_dims`) against a float64 numpy reference, on 1 to 8
devices, in chunks, per-size scales, and its validation.

The reference applies `tests/test_losses.reference` (explicit logit matrices, analytic
gradients) to every re-normalised prefix and chains the gradients back through the
normalisation by hand: `d(x/|x|)^T g = (g - y (y.g)) / |x|` with `y = x/|x|`.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cpt_jax import losses
from tests.test_losses import (
    RTOL,
    loss_and_grads,
    mesh_of,
    on_mesh,
    reference,
    shard_mapped,
    unit,
)

B, DIM, N_NEG = 16, 12, 2
DIMS = (12, 8, 4)


def inputs(seed=0, with_negatives=False):
    rng = np.random.default_rng(seed)
    q = unit(rng, B, DIM)
    d = unit(rng, B, DIM) * 0.4 + q
    d = (d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)
    negatives = unit(rng, B, N_NEG, DIM) if with_negatives else None
    return q, d, negatives


def _prefix(x, m):
    x = x[..., :m].astype(np.float64)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / norm, norm


def _back_through_prefix(grad, x, m):
    """Gradient w.r.t. the full-width x of a loss whose gradient w.r.t. prefix(x, m) is grad."""
    y, norm = _prefix(x, m)
    full = np.zeros(x.shape, np.float64)
    full[..., :m] = (grad - y * np.sum(y * grad, axis=-1, keepdims=True)) / norm
    return full


def matryoshka_reference(q, d, scales, dims, weights, negatives=None, **ids):
    """Loss and gradients (dq, dd, dneg, dscales) in float64; `scales` one per size."""
    total_w = float(sum(weights))
    loss, dq, dd = 0.0, 0.0, 0.0
    dneg = None if negatives is None else 0.0
    dscales = []
    for m, s, w in zip(dims, scales, weights):
        neg_m = None if negatives is None else _prefix(negatives, m)[0]
        loss_m, gq, gd, gn, gs = reference(_prefix(q, m)[0], _prefix(d, m)[0], s, neg_m, **ids)
        loss += w * loss_m / total_w
        dq = dq + w / total_w * _back_through_prefix(gq, q, m)
        dd = dd + w / total_w * _back_through_prefix(gd, d, m)
        if negatives is not None:
            dneg = dneg + w / total_w * _back_through_prefix(gn, negatives, m)
        dscales.append(w / total_w * gs)
    return loss, dq, dd, dneg, np.array(dscales)


def plain(fn):
    """A factory of `fn` with the Matryoshka options bound (single device or global arrays)."""
    return lambda options: functools.partial(fn, **options)


def raw_shard_map(mesh, axes):
    """The raw API inside `jax.shard_map`, the static Matryoshka options bound outside it."""
    return lambda options: shard_mapped(
        mesh, axes, fn=functools.partial(losses.symmetric_info_nce, **options)
    )


def assert_matches(
    make_loss_fn, q, d, scales, dims, weights=None, negatives=None, shared=False, **ids
):
    """`make_loss_fn(options)` with Matryoshka options equals the reference, the scale
    shared by the sizes or one per size."""
    weights_or_ones = weights or (1.0,) * len(dims)
    scales = (scales[0],) * len(dims) if shared else scales
    ref_loss, dq, dd, dneg, dscales = matryoshka_reference(
        q, d, scales, dims, weights_or_ones, negatives, **ids
    )
    options = dict(matryoshka_dims=dims, matryoshka_weights=weights)
    scale = np.float32(scales[0]) if shared else np.asarray(scales, np.float32)
    loss, grads = loss_and_grads(make_loss_fn(options), q, d, scale, negatives, **ids)
    np.testing.assert_allclose(loss, ref_loss, rtol=RTOL, err_msg="loss")
    np.testing.assert_allclose(grads[0], dq, rtol=RTOL, atol=1e-7, err_msg="d/dq")
    np.testing.assert_allclose(grads[1], dd, rtol=RTOL, atol=1e-7, err_msg="d/dd")
    expected_ds = dscales.sum() if shared else dscales
    np.testing.assert_allclose(grads[2], expected_ds, rtol=RTOL, atol=1e-7, err_msg="d/ds")
    if negatives is not None:
        np.testing.assert_allclose(grads[3], dneg, rtol=RTOL, atol=1e-6, err_msg="d/dneg")
    return loss


# -- one device ----------------------------------------------------------------------------------
@pytest.mark.parametrize("shared", [True, False])
def test_single_device_equals_reference(shared):
    q, d, _ = inputs(seed=1)
    assert_matches(plain(losses.symmetric_info_nce), q, d, (7.5, 6.0, 4.0), DIMS, shared=shared)


def test_weights_negatives_and_ids_equal_reference():
    q, d, negatives = inputs(seed=2, with_negatives=True)
    ids = np.arange(B, dtype=np.int32)
    ids[5] = ids[3]  # a duplicate document text: masked at every size
    negative_ids = np.full((B, N_NEG), 1000, np.int32)
    negative_ids[0, 1] = ids[0]
    assert_matches(
        plain(losses.symmetric_info_nce),
        q,
        d,
        (7.5, 5.0, 3.0),
        DIMS,
        weights=(1.0, 0.5, 2.0),
        negatives=negatives,
        query_ids=np.arange(B, dtype=np.int32),
        document_ids=ids,
        negative_ids=negative_ids,
    )


def test_one_full_size_is_the_plain_loss_and_prefixes_differ():
    q, d, _ = inputs(seed=3)
    plain = float(losses.symmetric_info_nce(q, d, logit_scale=7.5))
    one = float(losses.symmetric_info_nce(q, d, logit_scale=7.5, matryoshka_dims=(DIM,)))
    np.testing.assert_allclose(one, plain, rtol=1e-6)
    short = float(losses.symmetric_info_nce(q, d, logit_scale=7.5, matryoshka_dims=(DIM, 4)))
    assert abs(short - plain) > 1e-3


# -- many devices, chunks ------------------------------------------------------------------------
@pytest.mark.parametrize("num_devices", [2, 8])
@pytest.mark.parametrize("shared", [True, False])
def test_multi_device_equals_reference(num_devices, shared):
    q, d, negatives = inputs(seed=num_devices, with_negatives=True)
    mesh = mesh_of((num_devices,), ("data",))
    scales = (7.5, 6.0, 4.0)
    for make_loss_fn in (raw_shard_map(mesh, "data"), plain(on_mesh(mesh, "data"))):
        assert_matches(make_loss_fn, q, d, scales, DIMS, negatives=negatives, shared=shared)


@pytest.mark.parametrize("chunk_size", [3, 4])
def test_chunked_on_a_mesh_equals_reference(chunk_size):
    q, d, _ = inputs(seed=6)
    mesh = mesh_of((2, 2), ("data", "fsdp"))
    chunked = functools.partial(on_mesh(mesh, ("data", "fsdp")), chunk_size=chunk_size)
    assert_matches(plain(chunked), q, d, (7.5, 6.0, 4.0), DIMS, weights=(2.0, 1.0, 1.0))


# -- metrics ---------------------------------------------------------------------------------------
def test_metrics_are_the_largest_size_with_a_loss_per_size():
    q, d, _ = inputs(seed=7)
    scales = np.asarray([7.5, 6.0, 4.0], np.float32)
    mesh = mesh_of((4,), ("data",))
    loss, metrics = jax.jit(
        lambda q, d: losses.sharded_symmetric_info_nce_with_metrics(
            q, d, logit_scale=scales, mesh=mesh, matryoshka_dims=DIMS
        )
    )(q, d)
    for k, m in enumerate(DIMS):
        ref = reference(_prefix(q, m)[0], _prefix(d, m)[0], scales[k])[0]
        np.testing.assert_allclose(float(metrics[f"loss@{m}"]), ref, rtol=RTOL)
        np.testing.assert_allclose(float(metrics[f"logit_scale@{m}"]), scales[k])
    np.testing.assert_allclose(
        float(loss), np.mean([float(metrics[f"loss@{m}"]) for m in DIMS]), rtol=RTOL
    )
    full = losses.contrastive_metrics(q, d, logit_scale=scales[0])
    for key, value in full.items():
        np.testing.assert_allclose(float(metrics[key]), float(value), rtol=1e-5, err_msg=key)
    alone = losses.contrastive_metrics(q, d, logit_scale=scales, matryoshka_dims=DIMS)
    np.testing.assert_allclose(float(alone["accuracy_q2d"]), float(full["accuracy_q2d"]))


# -- validation ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options, message",
    [
        (dict(matryoshka_dims=(8, 12)), "decrease strictly"),
        (dict(matryoshka_dims=(16, 8)), r"within \[1, 12, the embedding width\]"),
        (dict(matryoshka_dims=(12, 0)), "decrease strictly"),
        (dict(matryoshka_dims=()), "non-empty"),
        (dict(matryoshka_dims=(12, 6.5)), "ints"),
        (dict(matryoshka_dims=(12, 6), matryoshka_weights=(1.0,)), "one per size"),
        (dict(matryoshka_dims=(12, 6), matryoshka_weights=(1.0, -1.0)), "non-negative"),
        (dict(matryoshka_weights=(1.0,)), "without matryoshka_dims"),
    ],
)
def test_bad_sizes_are_named(options, message):
    q, d, _ = inputs()
    with pytest.raises(ValueError, match=message):
        losses.symmetric_info_nce(q, d, logit_scale=5.0, **options)


def test_bad_scale_shapes_and_unknown_options_are_named():
    q, d, _ = inputs()
    with pytest.raises(ValueError, match=r"one per Matryoshka size \[3\]"):
        losses.symmetric_info_nce(q, d, logit_scale=jnp.ones(2), matryoshka_dims=DIMS)
    with pytest.raises(ValueError, match="must be a scalar"):
        losses.symmetric_info_nce(q, d, logit_scale=jnp.ones(3))
    mesh = mesh_of((1,), ("data",))
    with pytest.raises(TypeError, match="unknown loss options.*matryoshka_dim"):
        losses.sharded_symmetric_info_nce(q, d, logit_scale=5.0, mesh=mesh, matryoshka_dim=(4,))
