"""`cpt_jax.losses` against an independent float64 numpy reference, on 1 to 8 devices.

The reference is written from the math (cross-entropy over explicit logit matrices, analytic
gradients `softmax - onehot`) and shares no code with the module. JAX runs in float32 on
float32 inputs (x64 stays off, as in training); the data are well conditioned (unit-norm
embeddings, scale 7.5, B = 16), so loss and gradients agree with float64 at rtol 1e-5.
"""

import doctest
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from cpt_jax import losses
from cpt_jax.losses import info_nce, scoring, sharded, temperature

B, DIM, N_NEG = 16, 8, 2
RTOL = 1e-5


# -- float64 numpy reference -------------------------------------------------------------------
def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def reference(q, d, s, negatives=None, query_ids=None, document_ids=None, negative_ids=None):
    """Loss and gradients (dq, dd, dneg, ds) in float64 from explicit logit matrices.

    Columns of the query->document direction are `[d_0..d_{B-1} | n_00, n_01, n_10, ...]`.
    """
    q, d, s = q.astype(np.float64), d.astype(np.float64), float(s)
    b = len(q)
    columns = d
    if negatives is not None:
        columns = np.concatenate([d, negatives.astype(np.float64).reshape(-1, q.shape[1])])
    row_mask = np.zeros((b, len(columns)), bool)  # True = excluded
    col_mask = np.zeros((b, b), bool)  # [document j, query i]
    same_query = lambda i, j: query_ids is not None and query_ids[i] == query_ids[j]
    same_document = lambda i, j: document_ids is not None and document_ids[i] == document_ids[j]
    for i in range(b):
        for j in range(b):
            # Pair j is another positive of pair i when it shares either text.
            if i != j and (same_document(i, j) or same_query(i, j)):
                row_mask[i, j] = True
                col_mask[i, j] = True
        if negative_ids is not None:
            for k, nid in enumerate(negative_ids.reshape(-1)):
                row_mask[i, b + k] = nid == document_ids[i]
    zr = s * q @ columns.T  # rows: queries over documents (+ negatives)
    zc = s * d @ q.T  # columns: documents over queries
    pr = _softmax(np.where(row_mask, -np.inf, zr))
    pc = _softmax(np.where(col_mask, -np.inf, zc))
    idx = np.arange(b)
    loss = 0.5 * (-np.log(pr[idx, idx]) - np.log(pc[idx, idx])).mean()
    # dL/dz = (softmax - onehot) / (2B) in each direction.
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


def reference_by_deletion(q, d, s, query_ids, document_ids):
    """The masked loss written as deletion: each CE runs over the candidates that remain."""
    q, d = q.astype(np.float64), d.astype(np.float64)
    total = 0.0
    for i in range(len(q)):
        keep = [
            j
            for j in range(len(d))
            if j == i or (document_ids[j] != document_ids[i] and query_ids[j] != query_ids[i])
        ]
        z = s * d[keep] @ q[i]
        total += 0.5 * (np.log(np.exp(z).sum()) - s * q[i] @ d[i])
        z = s * q[keep] @ d[i]
        total += 0.5 * (np.log(np.exp(z).sum()) - s * q[i] @ d[i])
    return total / len(q)


def unit(rng, *shape):
    x = rng.normal(size=shape)
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def make_inputs(seed=0, with_negatives=False):
    rng = np.random.default_rng(seed)
    q = unit(rng, B, DIM)
    d = unit(rng, B, DIM) * 0.3 + q  # positives correlate with their queries
    d = (d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)
    negatives = unit(rng, B, N_NEG, DIM) if with_negatives else None
    return q, d, np.float32(7.5), negatives


# -- the three ways of calling the loss ---------------------------------------------------------
def mesh_of(shape, names):
    n = int(np.prod(shape))
    return jax.make_mesh(
        shape,
        names,
        axis_types=(jax.sharding.AxisType.Auto,) * len(names),
        devices=jax.devices()[:n],
    )


def shard_mapped(mesh, batch_axes, fn=losses.symmetric_info_nce):
    """The raw API: `fn(axis_name=batch_axes)` called by the user inside `jax.shard_map`."""
    spec = P(batch_axes)

    def loss_fn(q, d, *, logit_scale, **options):
        def local(q, d, s, options):
            return fn(q, d, logit_scale=s, axis_name=batch_axes, **options)

        return jax.shard_map(
            local, mesh=mesh, in_specs=(spec, spec, P(), spec), out_specs=P(), check_vma=True
        )(q, d, logit_scale, options)

    return loss_fn


def on_mesh(mesh, batch_axes, fn=losses.sharded_symmetric_info_nce):
    """The wrapper for global arrays (the jit around it is added by `loss_and_grads`)."""

    def loss_fn(q, d, *, logit_scale, **options):
        return fn(q, d, logit_scale=logit_scale, mesh=mesh, batch_axes=batch_axes, **options)

    return loss_fn


def loss_and_grads(loss_fn, q, d, s, negatives=None, **ids):
    """jit(value_and_grad) w.r.t. q, d, s (and negatives); ids are non-differentiable."""

    def f(q, d, s, negatives, ids):
        return loss_fn(q, d, logit_scale=s, negatives=negatives, **ids)

    argnums = (0, 1, 2) if negatives is None else (0, 1, 2, 3)
    loss, grads = jax.jit(jax.value_and_grad(f, argnums=argnums))(q, d, s, negatives, ids)
    return float(loss), [np.asarray(g) for g in grads]


def assert_matches_reference(loss_fn, q, d, s, negatives=None, **ids):
    ref_loss, dq, dd, dneg, ds = reference(q, d, s, negatives, **ids)
    loss, grads = loss_and_grads(loss_fn, q, d, s, negatives, **ids)
    np.testing.assert_allclose(loss, ref_loss, rtol=RTOL, err_msg="loss")
    np.testing.assert_allclose(grads[0], dq, rtol=RTOL, atol=1e-7, err_msg="d/dq")
    np.testing.assert_allclose(grads[1], dd, rtol=RTOL, atol=1e-7, err_msg="d/dd")
    np.testing.assert_allclose(grads[2], ds, rtol=RTOL, atol=1e-7, err_msg="d/ds")
    if negatives is not None:
        np.testing.assert_allclose(grads[3], dneg, rtol=RTOL, atol=1e-7, err_msg="d/dneg")
    return loss


def assert_everywhere_matches_reference(mesh, batch_axes, q, d, s, negatives=None, **ids):
    """Raw shard_map call and the jitted wrapper both equal the float64 reference."""
    assert_matches_reference(shard_mapped(mesh, batch_axes), q, d, s, negatives, **ids)
    assert_matches_reference(on_mesh(mesh, batch_axes), q, d, s, negatives, **ids)


# -- single device -------------------------------------------------------------------------------
def test_single_device_matches_reference():
    q, d, s, _ = make_inputs()
    loss = assert_matches_reference(losses.symmetric_info_nce, q, d, s)
    assert np.isfinite(loss) and loss > 0


def test_directions_are_averaged_not_summed():
    q, d, _, _ = make_inputs()
    # With s = 0 every candidate is equally likely: each direction's CE is log(B), and so is
    # their average (a sum would give 2 log B).
    np.testing.assert_allclose(
        float(losses.symmetric_info_nce(q, d, logit_scale=0.0)), np.log(B), rtol=1e-6
    )
    # The two directions differ (rows vs columns), so neither alone is the loss.
    z = 7.5 * q.astype(np.float64) @ d.astype(np.float64).T
    rows = np.mean(np.log(np.exp(z).sum(1)) - np.diag(z))
    cols = np.mean(np.log(np.exp(z).sum(0)) - np.diag(z))
    assert abs(rows - cols) > 1e-3
    got = float(losses.symmetric_info_nce(q, d, logit_scale=7.5))
    np.testing.assert_allclose(got, 0.5 * (rows + cols), rtol=RTOL)


def test_bfloat16_inputs_score_in_float32():
    q, d, s, _ = make_inputs()
    qb, db = jnp.asarray(q, jnp.bfloat16), jnp.asarray(d, jnp.bfloat16)
    loss = losses.symmetric_info_nce(qb, db, logit_scale=s)
    assert loss.dtype == jnp.float32
    ref = reference(np.asarray(qb, np.float64), np.asarray(db, np.float64), s)[0]
    np.testing.assert_allclose(float(loss), ref, rtol=1e-5)


def test_docstring_examples_run():
    attempted = 0
    for module in (losses, info_nce, sharded, scoring, temperature):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, (module.__name__, result)
        attempted += result.attempted
    assert attempted >= 8


# -- many devices --------------------------------------------------------------------------------
@pytest.mark.parametrize("num_devices", [1, 2, 4, 8])
def test_multi_device_equals_reference(num_devices):
    q, d, s, _ = make_inputs(seed=num_devices)
    assert_everywhere_matches_reference(mesh_of((num_devices,), ("data",)), "data", q, d, s)


@pytest.mark.parametrize("batch_axes", [("data",), ("data", "model"), ("model", "data")])
def test_two_dimensional_mesh_equals_reference(batch_axes):
    """4x2 mesh: batch over data only (replicated over model), or over both axes in either
    order (axis_index of a tuple must be the linear index that all_gather uses)."""
    q, d, s, _ = make_inputs(seed=11)
    assert_everywhere_matches_reference(mesh_of((4, 2), ("data", "model")), batch_axes, q, d, s)


def test_batch_axes_as_a_single_string_and_a_bad_axis():
    q, d, s, _ = make_inputs(seed=12)
    mesh = mesh_of((4, 2), ("data", "model"))
    expected = reference(q, d, s)[0]
    got = jax.jit(
        lambda q, d: losses.sharded_symmetric_info_nce(
            q, d, logit_scale=s, mesh=mesh, batch_axes="data"
        )
    )(q, d)
    np.testing.assert_allclose(float(got), expected, rtol=RTOL)
    with pytest.raises(ValueError, match="not axes of the mesh"):
        losses.sharded_symmetric_info_nce(q, d, logit_scale=s, mesh=mesh, batch_axes="batch")


# -- temperature -----------------------------------------------------------------------------------
def test_gradient_of_log_scale_clamp_and_freezing():
    q, d, _, _ = make_inputs()
    mesh = mesh_of((4,), ("data",))

    def grad(log_s, sharded=False, **kw):
        def f(ls):
            s = losses.logit_scale_from_log(ls, **kw)
            if sharded:
                return losses.sharded_symmetric_info_nce(q, d, logit_scale=s, mesh=mesh)
            return losses.symmetric_info_nce(q, d, logit_scale=s)

        return float(jax.jit(jax.grad(f))(log_s))

    log_s = np.float32(np.log(7.5))
    ds = reference(q, d, 7.5)[4]
    np.testing.assert_allclose(grad(log_s), ds * 7.5, rtol=RTOL)  # chain rule: dL/ds * s
    np.testing.assert_allclose(grad(log_s, sharded=True), ds * 7.5, rtol=RTOL)
    assert grad(log_s, trainable=False) == 0.0  # frozen temperature
    assert grad(np.float32(np.log(500.0))) == 0.0  # clamped: no gradient beyond the bound
    assert grad(np.float32(np.log(20.0)), max_scale=10.0) == 0.0
    np.testing.assert_allclose(
        float(losses.logit_scale_from_log(np.float32(np.log(500.0)))), 100.0, rtol=1e-6
    )
    np.testing.assert_allclose(float(losses.logit_scale_from_log(np.log(7.5))), 7.5, rtol=1e-6)
    init = losses.init_log_scale()
    assert init.dtype == jnp.float32 and init.shape == ()
    np.testing.assert_allclose(float(jnp.exp(init)), 1 / 0.07, rtol=1e-6)
    with pytest.raises(ValueError, match="positive"):
        losses.init_log_scale(0.0)


# -- hard negatives --------------------------------------------------------------------------------
def loss_with_layout(q, d, negatives, s, layout):
    """Query->document CE (rows only) over explicit columns, labels `arange(B)`.

    "PN": `[d_0 .. d_{B-1} | n_00 n_01 n_10 ...]` (the correct layout).
    "interleaved": `[d_0 n_00 n_01 d_1 n_10 n_11 ...]` with the same labels `arange(B)`, the
    `P N N P N N` bug (sentence-transformers PR #3453).
    """
    q, d, negatives = (x.astype(np.float64) for x in (q, d, negatives))
    if layout == "PN":
        columns = np.concatenate([d, negatives.reshape(-1, d.shape[1])])
    else:
        columns = np.concatenate([d[:, None], negatives], axis=1).reshape(-1, d.shape[1])
    z = s * q @ columns.T
    idx = np.arange(len(q))
    return np.mean(np.log(np.exp(z).sum(1)) - z[idx, idx])


def test_hard_negative_layout_is_positives_then_example_major_negatives():
    q, d, s, negatives = make_inputs(seed=5, with_negatives=True)
    # Hard negatives near-identical to their example's document: a wrong layout puts labels
    # on (or next to) high-scoring columns of other examples and changes the loss a lot.
    rng = np.random.default_rng(0)
    negatives = d[:, None, :] + 0.05 * rng.normal(size=(B, N_NEG, DIM))
    negatives = (negatives / np.linalg.norm(negatives, axis=-1, keepdims=True)).astype(np.float32)
    right = loss_with_layout(q, d, negatives, s, "PN")
    wrong = loss_with_layout(q, d, negatives, s, "interleaved")
    assert abs(right - wrong) > 0.1  # the layout test can fail
    zc = s * d.astype(np.float64) @ q.astype(np.float64).T  # documents over queries
    cols = np.mean(np.log(np.exp(zc).sum(1)) - np.diag(zc))
    for loss_fn in (losses.symmetric_info_nce, on_mesh(mesh_of((4,), ("data",)), "data")):
        got = loss_and_grads(loss_fn, q, d, s, negatives)[0]
        np.testing.assert_allclose(got, 0.5 * (right + cols), rtol=RTOL)
        assert abs(got - 0.5 * (wrong + cols)) > 0.05


def test_hard_negative_columns_sit_at_b_plus_example_times_n_plus_m():
    """Pins the literal column index, locally and per device: the negative that copies
    query i's embedding must be row i's argmax column `B + i*N + m`."""
    q, d, s, negatives = make_inputs(seed=5, with_negatives=True)
    negatives = negatives.copy()
    negatives[:, 1] = q
    score = lambda q, d, axis, n: scoring.score(*scoring.prepare(q, d, axis, n), s)
    block = score(q, d, None, negatives)
    expected = B + np.arange(B) * N_NEG + 1
    np.testing.assert_array_equal(np.argmax(np.asarray(block.rows), axis=1), expected)
    mesh = mesh_of((4,), ("data",))
    argmax = jax.jit(
        jax.shard_map(
            lambda q, d, n: jnp.argmax(score(q, d, "data", n).rows, axis=1),
            mesh=mesh,
            in_specs=P("data"),
            out_specs=P("data"),
        )
    )(q, d, negatives)
    np.testing.assert_array_equal(np.asarray(argmax), expected)
    metrics = losses.contrastive_metrics(q, d, logit_scale=s, negatives=negatives)
    assert float(metrics["accuracy_q2d"]) == 0.0


@pytest.mark.parametrize("num_devices", [1, 4])
def test_hard_negatives_match_reference_on_devices(num_devices):
    q, d, s, negatives = make_inputs(seed=3, with_negatives=True)
    assert_matches_reference(losses.symmetric_info_nce, q, d, s, negatives)
    assert_everywhere_matches_reference(
        mesh_of((num_devices,), ("data",)), "data", q, d, s, negatives
    )


# -- duplicate masking -----------------------------------------------------------------------------
def duplicated_inputs():
    q, d, s, _ = make_inputs(seed=7)
    q, d = q.copy(), d.copy()
    d[5] = d[2]  # two pairs share the same document text...
    q[9] = q[4]  # ...and two share the same query text
    d[13] = d[12] + 1e-3  # same text, different dropout: ids decide, not embeddings
    ids = np.arange(B, dtype=np.int32) + 1000
    document_ids, query_ids = ids.copy(), ids.copy()
    document_ids[5] = document_ids[2]
    document_ids[13] = document_ids[12]
    query_ids[9] = query_ids[4]
    return q, d, s, query_ids, document_ids


def test_masking_equals_removing_the_duplicate_candidates():
    q, d, s, query_ids, document_ids = duplicated_inputs()
    ids = dict(query_ids=query_ids, document_ids=document_ids)
    masked = assert_matches_reference(losses.symmetric_info_nce, q, d, s, **ids)
    np.testing.assert_allclose(
        masked, reference_by_deletion(q, d, s, query_ids, document_ids), rtol=RTOL
    )
    unmasked = float(losses.symmetric_info_nce(q, d, logit_scale=s))
    assert masked < unmasked - 1e-3  # removing false negatives lowers the loss
    # Either id array alone masks the pairs that share its text, in both directions.
    only_docs = float(losses.symmetric_info_nce(q, d, logit_scale=s, document_ids=document_ids))
    np.testing.assert_allclose(
        only_docs, reference(q, d, s, document_ids=document_ids)[0], rtol=RTOL
    )
    assert masked < only_docs < unmasked


def test_identical_embeddings_with_different_ids_are_not_masked():
    q, d, s, _, _ = duplicated_inputs()
    ids = np.arange(B, dtype=np.int32)
    got = float(losses.symmetric_info_nce(q, d, logit_scale=s, query_ids=ids, document_ids=ids))
    np.testing.assert_allclose(got, float(losses.symmetric_info_nce(q, d, logit_scale=s)))


@pytest.mark.parametrize(
    "shape, names, batch_axes",
    [((8,), ("data",), "data"), ((4, 2), ("data", "model"), ("data", "model"))],
)
def test_duplicate_masking_on_devices_equals_reference(shape, names, batch_axes):
    q, d, s, query_ids, document_ids = duplicated_inputs()
    assert_everywhere_matches_reference(
        mesh_of(shape, names), batch_axes, q, d, s, query_ids=query_ids, document_ids=document_ids
    )


def test_negative_ids_mask_hard_negatives_equal_to_the_positive():
    q, d, s, negatives = make_inputs(seed=9, with_negatives=True)
    negatives = negatives.copy()
    ids = np.arange(B, dtype=np.int32)
    negative_ids = np.arange(B * N_NEG, dtype=np.int32).reshape(B, N_NEG) + 1000
    negative_ids[3, 0] = ids[3]  # row 3's first hard negative is its positive's text
    negative_ids[6, 1] = ids[11]  # row 6's second is row 11's document: masked for row 11
    negatives[3, 0] = d[3]
    kw = dict(query_ids=ids, document_ids=ids, negative_ids=negative_ids)
    masked = assert_matches_reference(losses.symmetric_info_nce, q, d, s, negatives, **kw)
    unmasked = reference(q, d, s, negatives, query_ids=ids, document_ids=ids)[0]
    assert masked < unmasked - 1e-3
    assert_everywhere_matches_reference(mesh_of((2,), ("data",)), "data", q, d, s, negatives, **kw)


def test_bad_arguments_are_named():
    q, d, s, negatives = make_inputs(with_negatives=True)
    ids = np.arange(B)
    with pytest.raises(ValueError, match="negatives must be"):
        losses.symmetric_info_nce(q, d, logit_scale=s, negatives=negatives[:, 0])
    with pytest.raises(ValueError, match="must be the same"):
        losses.symmetric_info_nce(q, d[:4], logit_scale=s)
    with pytest.raises(ValueError, match="without negatives"):
        losses.symmetric_info_nce(q, d, logit_scale=s, document_ids=ids, negative_ids=ids)
    with pytest.raises(ValueError, match="needs document_ids"):
        losses.symmetric_info_nce(
            q, d, logit_scale=s, negatives=negatives, negative_ids=np.zeros((B, N_NEG))
        )


# -- metrics ---------------------------------------------------------------------------------------
def hand_made_batch():
    """8 pairs in 8 dims, scale 10, one hard negative each; expected metrics by hand below.

    q_i = e_i. d_i = e_i except d_1 = e_2, d_2 = e_1 (swapped) and d_6 = 0.8 e_6 + 0.6 e_7.
    Hard negatives n_i = -e_i except n_6 = e_6, whose id is row 6's document id.
    """
    eye = np.eye(8, dtype=np.float32)
    q, d = eye.copy(), eye.copy()
    d[[1, 2]] = d[[2, 1]]
    d[6] = 0.8 * eye[6] + 0.6 * eye[7]
    negatives = -eye[:, None, :]
    negatives[6, 0] = eye[6]
    ids = np.arange(8, dtype=np.int32)
    negative_ids = (100 + ids)[:, None]
    negative_ids[6, 0] = ids[6]
    return q, d, np.float32(10.0), negatives, ids, negative_ids


# Rows: 0,3,4,5,7 correct; 1,2 pick the swapped document; 6 picks n_6 (10 > 8) unless masked.
# Columns: d_1, d_2 pick the wrong query; d_6 picks q_6 (8 > 6).
# Positives: 10 * 5 + 0 + 0 + 8 = 58 over 8. Off-positive row logits (8 * 15 = 120 entries):
# in-batch 10 (q_1.d_2) + 10 (q_2.d_1) + 6 (q_7.d_6); negatives -10 * 7 + 10 (q_6.n_6).
HAND_MADE_EXPECTED = {
    "unmasked": {
        "accuracy_q2d": 5 / 8,
        "accuracy_d2q": 6 / 8,
        "positive_logit_mean": 58 / 8,
        "negative_logit_mean": (26 - 60) / 120,
        "logit_scale": 10.0,
    },
    "masked": {
        "accuracy_q2d": 6 / 8,
        "accuracy_d2q": 6 / 8,
        "positive_logit_mean": 58 / 8,
        "negative_logit_mean": (26 - 70) / 119,
        "logit_scale": 10.0,
    },
}


@pytest.mark.parametrize("case", ["unmasked", "masked"])
def test_metrics_on_a_hand_made_batch_on_one_and_many_devices(case):
    q, d, s, negatives, ids, negative_ids = hand_made_batch()
    options = {"negatives": negatives}
    if case == "masked":
        options.update(query_ids=ids, document_ids=ids, negative_ids=negative_ids)
    results = {"single": losses.contrastive_metrics(q, d, logit_scale=s, **options)}
    for shape, names, axes in [((8,), ("data",), "data"), ((2, 2), ("data", "model"), "data")]:
        mesh = mesh_of(shape, names)
        results[f"wrapper{shape}"] = jax.jit(
            lambda q, d, options, mesh=mesh, axes=axes: losses.sharded_contrastive_metrics(
                q, d, logit_scale=s, mesh=mesh, batch_axes=axes, **options
            )
        )(q, d, options)
    results["shard_map"] = jax.jit(
        lambda q, d, options: shard_mapped(
            mesh_of((4,), ("data",)), "data", losses.contrastive_metrics
        )(q, d, logit_scale=s, **options)
    )(q, d, options)
    for where, metrics in results.items():
        assert set(metrics) == set(HAND_MADE_EXPECTED[case]), where
        for name, value in HAND_MADE_EXPECTED[case].items():
            np.testing.assert_allclose(
                float(metrics[name]), value, rtol=1e-6, err_msg=f"{where}: {name}"
            )


def test_metrics_on_random_data_match_numpy_on_a_4x2_mesh():
    q, d, s, _ = make_inputs(seed=13)
    d = d.copy()
    d[[0, 1]] = d[[1, 0]]  # two queries now point at the wrong document
    z = s * q.astype(np.float64) @ d.astype(np.float64).T
    idx = np.arange(B)
    expected = {
        "accuracy_q2d": (z.argmax(1) == idx).mean(),
        "accuracy_d2q": (z.argmax(0) == idx).mean(),
        "positive_logit_mean": z[idx, idx].mean(),
        "negative_logit_mean": z[~np.eye(B, dtype=bool)].mean(),
    }
    assert 0 < expected["accuracy_q2d"] < 1
    mesh = mesh_of((4, 2), ("data", "model"))
    got = jax.jit(
        lambda q, d: losses.sharded_contrastive_metrics(
            q, d, logit_scale=s, mesh=mesh, batch_axes=("data", "model")
        )
    )(q, d)
    for name, value in expected.items():
        np.testing.assert_allclose(float(got[name]), value, rtol=RTOL, atol=1e-6, err_msg=name)


# -- row chunking ------------------------------------------------------------------------------
def chunked(fn, chunk_size):
    return lambda q, d, **kw: fn(q, d, chunk_size=chunk_size, **kw)


@pytest.mark.parametrize("chunk_size", [1, 3, 4, 16])
def test_chunked_loss_matches_reference_with_negatives_and_ids(chunk_size):
    """Chunks that divide the rows (4, 16), leave a remainder (3) and are single rows (1)."""
    q, d, s, negatives = make_inputs(seed=21, with_negatives=True)
    ids = np.arange(B, dtype=np.int32) % 11  # rows 0-4 share ids with rows 11-15
    negative_ids = np.tile(ids[:, None], (1, N_NEG))[::-1].copy()
    options = dict(query_ids=ids, document_ids=ids, negative_ids=negative_ids)
    assert_matches_reference(
        chunked(losses.symmetric_info_nce, chunk_size), q, d, s, negatives, **options
    )


@pytest.mark.parametrize(
    "shape,names,batch_axes",
    [((4,), ("data",), "data"), ((2, 2), ("data", "fsdp"), ("data", "fsdp"))],
)
def test_chunked_loss_on_devices_matches_reference(shape, names, batch_axes):
    q, d, s, negatives = make_inputs(seed=22, with_negatives=True)
    ids = np.arange(B, dtype=np.int32) % 5
    mesh = mesh_of(shape, names)
    for chunk_size in (1, 3):  # 4 local rows per device: whole blocks and a remainder
        fn = chunked(losses.sharded_symmetric_info_nce, chunk_size)
        loss_fn = lambda q, d, fn=fn, **kw: fn(q, d, mesh=mesh, batch_axes=batch_axes, **kw)
        assert_matches_reference(loss_fn, q, d, s, negatives, query_ids=ids, document_ids=ids)
        raw = chunked(losses.symmetric_info_nce, chunk_size)
        assert_matches_reference(shard_mapped(mesh, batch_axes, raw), q, d, s, negatives)


def test_chunked_metrics_equal_unchunked():
    q, d, s, negatives = make_inputs(seed=23, with_negatives=True)
    d = d.copy()
    d[[0, 5]] = d[[5, 0]]
    ids = np.arange(B, dtype=np.int32) % 7
    options = dict(negatives=negatives, query_ids=ids, document_ids=ids)
    whole = losses.contrastive_metrics(q, d, logit_scale=s, **options)
    mesh = mesh_of((4,), ("data",))
    for got in (
        losses.contrastive_metrics(q, d, logit_scale=s, chunk_size=3, **options),
        jax.jit(
            lambda q, d, o: losses.sharded_contrastive_metrics(
                q, d, logit_scale=s, mesh=mesh, chunk_size=2, **o
            )
        )(q, d, options),
    ):
        for name, value in whole.items():
            np.testing.assert_allclose(float(got[name]), float(value), rtol=1e-6, err_msg=name)
    assert float(whole["accuracy_q2d"]) < 1.0


@pytest.mark.parametrize("chunk_size", [None, 3])
def test_loss_with_metrics_is_the_loss_and_the_metrics_of_one_scoring(chunk_size):
    """`symmetric_info_nce_with_metrics` (what the train step calls) gives the loss and
    gradients of `symmetric_info_nce` and the metrics of `contrastive_metrics`, on one device
    and on a 4-device mesh, with hard negatives, ids and row chunks; the metrics carry no
    gradient."""
    q, d, s, negatives = make_inputs(seed=24, with_negatives=True)
    d = d.copy()
    d[[0, 5]] = d[[5, 0]]
    ids = np.arange(B, dtype=np.int32) % 7
    ids = dict(query_ids=ids, document_ids=ids)
    metrics = losses.contrastive_metrics(
        q, d, logit_scale=s, negatives=negatives, chunk_size=chunk_size, **ids
    )
    want = loss_and_grads(chunked(losses.symmetric_info_nce, chunk_size), q, d, s, negatives, **ids)
    mesh = mesh_of((4,), ("data",))
    for name, fn in [
        ("single", losses.symmetric_info_nce_with_metrics),
        ("mesh", on_mesh(mesh, "data", losses.sharded_symmetric_info_nce_with_metrics)),
    ]:
        fn = chunked(fn, chunk_size)
        loss_only = lambda *args, fn=fn, **kw: fn(*args, **kw)[0]
        loss, grads = loss_and_grads(loss_only, q, d, s, negatives, **ids)
        np.testing.assert_allclose(loss, want[0], rtol=1e-6, err_msg=name)
        for got, expected in zip(grads, want[1]):
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7, err_msg=name)
        f = lambda q, d, fn=fn: fn(q, d, logit_scale=s, negatives=negatives, **ids)[1]
        for key, value in jax.jit(f)(q, d).items():
            np.testing.assert_allclose(float(value), float(metrics[key]), rtol=1e-6, err_msg=key)
        metric_grads = jax.grad(lambda q, f=f: sum(f(q, d).values()))(q)
        assert not np.asarray(metric_grads).any(), name


def test_chunking_bounds_the_memory_of_loss_and_gradient():
    """XLA's own accounting of the compiled value_and_grad: unchunked temporaries grow as B^2
    (several [B, B] float32 logit matrices), chunked ones as chunk_size * B."""

    def temp_bytes(b, chunk_size):
        q = jax.ShapeDtypeStruct((b, 64), jnp.float32)
        f = lambda q, d: losses.symmetric_info_nce(q, d, logit_scale=10.0, chunk_size=chunk_size)
        compiled = jax.jit(jax.value_and_grad(f, argnums=(0, 1))).lower(q, q).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    whole = {b: temp_bytes(b, None) for b in (2048, 4096)}
    chunked_bytes = {b: temp_bytes(b, 128) for b in (2048, 4096)}
    assert whole[4096] >= 4096 * 4096 * 4, whole
    assert whole[4096] / whole[2048] > 3.5, whole  # quadratic
    assert chunked_bytes[4096] / chunked_bytes[2048] < 2.5, chunked_bytes  # linear
    assert chunked_bytes[4096] < whole[4096] / 8, (chunked_bytes, whole)


def test_bad_chunk_size_is_named():
    q, d, s, _ = make_inputs()
    with pytest.raises(ValueError, match="chunk_size"):
        losses.symmetric_info_nce(q, d, logit_scale=s, chunk_size=0)


# -- packaging -------------------------------------------------------------------------------------
def test_importing_losses_does_not_import_tensorflow_seqio_or_flax():
    code = (
        "import sys, cpt_jax.losses; "
        "print(sorted(m for m in ('tensorflow', 'seqio', 'flax') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
