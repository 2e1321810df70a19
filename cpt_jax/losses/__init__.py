"""Contrastive losses with negatives gathered across every device and host.

Imports only jax, numpy and the standard library, so that other projects can
`import cpt_jax.losses` without tensorflow, seqio or flax.

The loss of the paper (Neelakantan et al., 2022), for a global batch of B pairs of unit-norm
embeddings `(q_i, d_i)` and a learned scale `s = 1 / temperature`:

    Z[i, j] = s * <q_i, d_j>
    L = 1/B * sum_i 0.5 * ( CE(Z[i, :], i)  +  CE(Z[:, i], i) )

where `CE(z, t) = logsumexp(z) - z[t]`: each query must pick out its document among all B
documents (rows, query->document), and each document its query among all B queries
(columns, document->query). The two directions are averaged, not summed (t5x_retrieval sums
them, which silently doubles the learning rate).

Across devices (`axis_name` given, inside `jax.shard_map` over the batch axes), each device
holds b = B / n rows. It scores its local queries against the all-gathered documents and its
local documents against the all-gathered queries, so it never materialises more than
`[b, B]` logits; the per-device sums are `psum`-ed and divided by the global B. JAX
differentiates `all_gather` itself (its transpose is `psum_scatter`), so the gradients equal
those of the single-device loss with no hand-written gradient (the bug class of open_clip#616
and tevatron#30). `sharded_symmetric_info_nce` does this for global arrays on a mesh.

Hard negatives `[b, N, d]` add columns to the query->document direction only; globally the
columns are laid out `[positives (B) | negatives (B*N)]`, the negative block example-major
(example 0's N negatives, then example 1's, ...), so row i's label is always column i.

False negatives: pass an integer id per text (e.g. a 31-bit hash of it). In-batch pair j is
masked out of row i's candidates (its logit set to -inf) when pair j is another positive of
row i: in the query->document direction when `document_ids[j] == document_ids[i]` (the same
text) or `query_ids[j] == query_ids[i]` (a query with several positives, as in supervised
data); in the document->query direction when either id matches likewise. Hard negatives are
masked when their id equals the row's positive document's. Never mask by embedding equality
(dropout makes identical texts embed differently).


Matryoshka sizes (`matryoshka_dims`, Kusupati et al., 2022): the same loss on the first m
coordinates of every embedding, re-normalised, for each m, averaged with weights; the
logit scale shared by all sizes or one per size. A prefix of such an embedding is then an
embedding itself (`cpt_jax.quantization.truncate`).

Modules: `info_nce` (the losses), `sharded` (the same for global arrays on a mesh),
`temperature` (the learned scale), `scoring` (internals: gathering, masking, blocks).
"""

from cpt_jax.losses.info_nce import (
    contrastive_metrics,
    symmetric_info_nce,
    symmetric_info_nce_with_metrics,
)
from cpt_jax.losses.scoring import AxisName, matryoshka_sizes, prefix
from cpt_jax.losses.sharded import (
    sharded_contrastive_metrics,
    sharded_symmetric_info_nce,
    sharded_symmetric_info_nce_with_metrics,
)
from cpt_jax.losses.temperature import init_log_scale, logit_scale_from_log

__all__ = [
    "AxisName",
    "contrastive_metrics",
    "init_log_scale",
    "logit_scale_from_log",
    "matryoshka_sizes",
    "prefix",
    "sharded_contrastive_metrics",
    "sharded_symmetric_info_nce",
    "sharded_symmetric_info_nce_with_metrics",
    "symmetric_info_nce",
    "symmetric_info_nce_with_metrics",
]
