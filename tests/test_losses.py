"""`cpt_jax.losses` against an independent float64 numpy reference, on 1 to 8 devices.

The reference is written from the math (cross-entropy over explicit logit matrices, analytic
gradients `softmax - onehot`) and shares no code with the module.
"""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from cpt_jax import losses

B, DIM, N_NEG = 16, 8, 2
RTOL = 1e-5


# -- reference ---------------------------------------------------------------------------------
def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def reference(q, d, s, negatives=None, query_ids=None, document_ids=None, negative_ids=None):
    """Loss and gradients (dq, dd, dneg, ds) in float64 from explicit logit matrices."""
    q, d, s = q.astype(np.float64), d.astype(np.float64), float(s)
    b = len(q)
    columns = d if negatives is None else np.concatenate([d, negatives.reshape(-1, q.shape[1])])
    row_mask = np.zeros((b, len(columns)), bool)  # True = excluded
    col_mask = np.zeros((b, b), bool)
    for i in range(b):
        for j in range(b):
            if i != j and document_ids is not None and document_ids[j] == document_ids[i]:
                row_mask[i, j] = True
            if i != j and query_ids is not None and query_ids[i] == query_ids[j]:
                col_mask[j, i] = True
        if negative_ids is not None:
            for k, nid in enumerate(negative_ids.reshape(-1)):
                row_mask[i, b + k] = nid == document_ids[i]
    zr = s * q @ columns.T  # rows: queries over documents (+ negatives)
    zc = s * d @ q.T  # columns: documents over queries
    zr_m, zc_m = np.where(row_mask, -np.inf, zr), np.where(col_mask, -np.inf, zc)
    pr, pc = _softmax(zr_m), _softmax(zc_m)
    idx = np.arange(b)
    loss = 0.5 * (-np.log(pr[idx, idx]) - np.log(pc[idx, idx])).mean()
    gr, gc = pr.copy(), pc.copy()
    gr[idx, idx] -= 1
    gc[idx, idx] -= 1
    gr, gc = gr / (2 * b), gc / (2 * b)
    dq = s * gr @ columns + s * gc.T @ d
    dcols = s * gr.T @ q
    dd = dcols[:b] + s * gc @ q
    dneg = None if negatives is None else dcols[b:].reshape(negatives.shape)
    ds = (gr * np.where(row_mask, 0, zr)).sum() / s + (gc * np.where(col_mask, 0, zc)).sum() / s
    return loss, dq, dd, dneg, ds


def unit(rng, *shape):
    x = rng.normal(size=shape)
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def make_inputs(seed=0, with_negatives=False):
    rng = np.random.default_rng(seed)
    q, d = unit(rng, B, DIM), unit(rng, B, DIM)
    d = unit(rng, B, DIM) * 0.3 + q  # positives correlate with their queries
    d = (d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)
    negatives = unit(rng, B, N_NEG, DIM) if with_negatives else None
    return q, d, np.float32(7.5), negatives


def jax_loss_and_grads(loss_fn, q, d, s, negatives=None, **ids):
    def f(q, d, s, negatives):
        return loss_fn(q, d, logit_scale=s, negatives=negatives, **ids)

    argnums = (0, 1, 2) if negatives is None else (0, 1, 2, 3)
    loss, grads = jax.value_and_grad(f, argnums=argnums)(q, d, s, negatives)
    grads = [np.asarray(g) for g in grads]
    return float(loss), grads


def assert_matches_reference(loss_fn, q, d, s, negatives=None, **ids):
    ref_loss, dq, dd, dneg, ds = reference(
        q, d, s, negatives, **{k: None if v is None else np.asarray(v) for k, v in ids.items()}
    )
    loss, grads = jax_loss_and_grads(loss_fn, q, d, s, negatives, **ids)
    np.testing.assert_allclose(loss, ref_loss, rtol=RTOL)
    np.testing.assert_allclose(grads[0], dq, rtol=RTOL, atol=1e-7)
    np.testing.assert_allclose(grads[1], dd, rtol=RTOL, atol=1e-7)
    np.testing.assert_allclose(grads[2], ds, rtol=RTOL, atol=1e-7)
    if negatives is not None:
        np.testing.assert_allclose(grads[3], dneg, rtol=RTOL, atol=1e-7)


def mesh_of(shape, names):
    n = int(np.prod(shape))
    return jax.make_mesh(
        shape,
        names,
        axis_types=(jax.sharding.AxisType.Auto,) * len(names),
        devices=jax.devices()[:n],
    )


def shard_mapped(mesh, batch_axes, with_ids=False, with_negative_ids=False):
    """The raw API: `symmetric_info_nce(axis_name=...)` called by the user inside shard_map."""
    spec = P(batch_axes)

    def loss_fn(q, d, *, logit_scale, negatives=None, **ids):
        def local(q, d, s, negatives, ids):
            return losses.symmetric_info_nce(
                q, d, logit_scale=s, axis_name=batch_axes, negatives=negatives, **ids
            )

        return jax.shard_map(
            local, mesh=mesh, in_specs=(spec, spec, P(), spec, spec), out_specs=P()
        )(q, d, logit_scale, negatives, ids)

    return loss_fn


def on_mesh(mesh, batch_axes):
    def loss_fn(q, d, *, logit_scale, **kw):
        return jax.jit(
            lambda q, d, s: losses.sharded_symmetric_info_nce(
                q, d, logit_scale=s, mesh=mesh, batch_axes=batch_axes, **kw
            )
        )(q, d, logit_scale)

    return loss_fn


# -- single device ---------------------------------------------------------------------------
def test_single_device_matches_reference():
    q, d, s, _ = make_inputs()
    assert_matches_reference(losses.symmetric_info_nce, q, d, s)


def test_perfect_alignment_gives_near_zero_loss_and_docstring_example():
    eye = jnp.eye(4)
    assert float(losses.symmetric_info_nce(eye, eye, logit_scale=100.0)) < 1e-6
    # With s = 0 every column is equally likely: loss = log(B).
    q, d, _, _ = make_inputs()
    np.testing.assert_allclose(
        float(losses.symmetric_info_nce(q, d, logit_scale=0.0)), np.log(B), rtol=1e-6
    )


def test_bfloat16_inputs_score_in_float32():
    q, d, s, _ = make_inputs()
    loss = losses.symmetric_info_nce(
        jnp.asarray(q, jnp.bfloat16), jnp.asarray(d, jnp.bfloat16), logit_scale=s
    )
    assert loss.dtype == jnp.float32
    ref = reference(
        np.asarray(jnp.asarray(q, jnp.bfloat16), np.float64),
        np.asarray(jnp.asarray(d, jnp.bfloat16), np.float64),
        s,
    )[0]
    np.testing.assert_allclose(float(loss), ref, rtol=1e-4)


# -- many devices ----------------------------------------------------------------------------
@pytest.mark.parametrize("num_devices", [1, 2, 4, 8])
def test_multi_device_equals_reference(num_devices):
    q, d, s, _ = make_inputs(seed=num_devices)
    mesh = mesh_of((num_devices,), ("data",))
    assert_matches_reference(shard_mapped(mesh, "data"), q, d, s)
    assert_matches_reference(on_mesh(mesh, ("data",)), q, d, s)


@pytest.mark.parametrize("batch_axes", [("data",), ("data", "model")])
def test_two_dimensional_mesh_equals_reference(batch_axes):
    q, d, s, _ = make_inputs(seed=11)
    mesh = mesh_of((4, 2), ("data", "model"))
    assert_matches_reference(shard_mapped(mesh, batch_axes), q, d, s)
    assert_matches_reference(on_mesh(mesh, batch_axes), q, d, s)


def test_gradient_of_log_scale_through_the_clamp():
    q, d, _, _ = make_inputs()
    grad = lambda log_s, **kw: jax.grad(
        lambda ls: losses.symmetric_info_nce(
            q, d, logit_scale=losses.logit_scale_from_log(ls, **kw)
        )
    )(log_s)
    log_s = np.float32(np.log(7.5))
    ds = reference(q, d, 7.5)[4]
    np.testing.assert_allclose(float(grad(log_s)), ds * 7.5, rtol=RTOL)  # chain rule: ds * s
    assert float(grad(log_s, trainable=False)) == 0.0
    assert float(grad(np.float32(np.log(500.0)))) == 0.0  # clamped: no gradient upward
    np.testing.assert_allclose(
        float(losses.logit_scale_from_log(np.float32(np.log(500.0)))), 100.0, rtol=1e-6
    )
    np.testing.assert_allclose(float(jnp.exp(losses.init_log_scale(20.0))), 20.0, rtol=1e-6)
    with pytest.raises(ValueError, match="positive"):
        losses.init_log_scale(0.0)


# -- hard negatives ----------------------------------------------------------------------------
def test_hard_negatives_match_reference_single_and_multi_device():
    q, d, s, negatives = make_inputs(seed=3, with_negatives=True)
    assert_matches_reference(losses.symmetric_info_nce, q, d, s, negatives)
    mesh = mesh_of((4,), ("data",))
    assert_matches_reference(shard_mapped(mesh, "data"), q, d, s, negatives)
    assert_matches_reference(on_mesh(mesh, ("data",)), q, d, s, negatives)


def test_hard_negative_column_layout_is_positives_then_example_major_negatives():
    """Row i's logits are [s<q_i, d_j> for all j] + [s<q_i, n_{k,m}> for k, m example-major]."""
    q, d, s, negatives = make_inputs(seed=5, with_negatives=True)
    # Make one negative an exact copy of its own query: only the right layout puts that
    # column at B + i*N + m, so the metrics' argmax pins the layout.
    negatives = negatives.copy()
    for i in range(B):
        negatives[i, 1] = q[i]
    metrics = losses.contrastive_metrics(q, d, logit_scale=s, negatives=negatives)
    assert float(metrics["accuracy_q2d"]) == 0.0  # every row's argmax is its hard negative
    block = losses._score(q, d, s, None, negatives)
    expected_argmax = B + np.arange(B) * N_NEG + 1
    np.testing.assert_array_equal(np.argmax(np.asarray(block.rows), axis=1), expected_argmax)
    # The loss itself is invariant to permuting negative columns; what the layout decides is
    # where each row's label points, which the argmax above pins.


# -- duplicate masking ---------------------------------------------------------------------------
def duplicated_inputs():
    q, d, s, _ = make_inputs(seed=7)
    q, d = q.copy(), d.copy()
    d[5] = d[2]  # two pairs share the same document text...
    q[9] = q[4]  # ...and two share the same query text
    ids = np.arange(B, dtype=np.int32)
    document_ids, query_ids = ids.copy(), ids.copy()
    document_ids[5] = document_ids[2]
    query_ids[9] = query_ids[4]
    return q, d, s, query_ids, document_ids


def test_duplicate_masking_matches_reference_and_changes_the_loss():
    q, d, s, query_ids, document_ids = duplicated_inputs()
    ids = dict(query_ids=query_ids, document_ids=document_ids)
    assert_matches_reference(losses.symmetric_info_nce, q, d, s, **ids)
    masked = float(losses.symmetric_info_nce(q, d, logit_scale=s, **ids))
    unmasked = float(losses.symmetric_info_nce(q, d, logit_scale=s))
    assert masked < unmasked  # removing false negatives can only lower the loss
    mesh = mesh_of((8,), ("data",))
    assert_matches_reference(shard_mapped(mesh, "data"), q, d, s, **ids)
    assert_matches_reference(on_mesh(mesh, ("data",)), q, d, s, **ids)


def test_masking_equals_removing_the_duplicate_columns():
    """Row 2's loss with masking equals its loss over the batch without column 5."""
    q, d, s, query_ids, document_ids = duplicated_inputs()
    block = losses._score(q, d, s, None, None, query_ids, document_ids)
    row = np.asarray(block.rows)[2]
    z = s * q[2].astype(np.float64) @ np.delete(d, 5, axis=0).astype(np.float64).T
    expected = np.log(np.exp(z).sum()) - z[2]
    got = float(losses._cross_entropy(block.rows[2:3], block.labels[2:3])[0])
    np.testing.assert_allclose(got, expected, rtol=RTOL)
    assert np.isneginf(row[5]) and np.isfinite(row[2])


def test_negative_ids_mask_hard_negatives_equal_to_the_positive():
    q, d, s, negatives = make_inputs(seed=9, with_negatives=True)
    ids = np.arange(B, dtype=np.int32)
    negative_ids = np.full((B, N_NEG), 1000, np.int32)
    negative_ids[3, 0] = ids[3]  # row 3's first hard negative is its positive's text
    kw = dict(query_ids=ids, document_ids=ids, negative_ids=negative_ids)
    assert_matches_reference(losses.symmetric_info_nce, q, d, s, negatives, **kw)
    assert_matches_reference(
        shard_mapped(mesh_of((2,), ("data",)), "data"), q, d, s, negatives, **kw
    )


def test_bad_arguments_are_named():
    q, d, s, negatives = make_inputs(with_negatives=True)
    with pytest.raises(ValueError, match="both query_ids and document_ids"):
        losses.symmetric_info_nce(q, d, logit_scale=s, query_ids=np.arange(B))
    with pytest.raises(ValueError, match="negatives must be"):
        losses.symmetric_info_nce(q, d, logit_scale=s, negatives=negatives[:, 0])
    with pytest.raises(ValueError, match="differ in rows"):
        losses.symmetric_info_nce(q, d[:4], logit_scale=s)


# -- metrics ---------------------------------------------------------------------------------------
def reference_metrics(q, d, s):
    z = s * q.astype(np.float64) @ d.astype(np.float64).T
    idx = np.arange(len(q))
    off = ~np.eye(len(q), dtype=bool)
    return {
        "accuracy_q2d": (z.argmax(1) == idx).mean(),
        "accuracy_d2q": (z.argmax(0) == idx).mean(),
        "positive_logit_mean": z[idx, idx].mean(),
        "negative_logit_mean": z[off].mean(),
        "logit_scale": s,
    }


def test_metrics_match_reference_on_one_and_many_devices():
    q, d, s, _ = make_inputs(seed=13)
    d = d.copy()
    d[[0, 1]] = d[[1, 0]]  # two rows now point at the wrong document
    expected = reference_metrics(q, d, s)
    assert expected["accuracy_q2d"] < 1.0
    single = losses.contrastive_metrics(q, d, logit_scale=s)
    mesh = mesh_of((4, 2), ("data", "model"))
    sharded = jax.jit(
        lambda q, d: losses.sharded_contrastive_metrics(
            q, d, logit_scale=s, mesh=mesh, batch_axes=("data", "model")
        )
    )(q, d)
    for name, value in expected.items():
        np.testing.assert_allclose(float(single[name]), value, rtol=RTOL, err_msg=name)
        np.testing.assert_allclose(float(sharded[name]), value, rtol=RTOL, err_msg=name)


def test_importing_losses_does_not_import_tensorflow_seqio_or_flax():
    code = (
        "import sys, cpt_jax.losses; "
        "print(sorted(m for m in ('tensorflow', 'seqio', 'flax') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
