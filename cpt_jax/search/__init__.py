"""Semantic code search over a directory: `CodeIndex` (the API) and `python -m cpt_jax.search`
(the CLI: `index`, then `query`). See `cpt_jax.search.index` for the index and its ranking."""

from cpt_jax.search.index import (
    DEFAULT_RANKING,
    DEFAULT_RRF_K,
    DEFAULT_WEIGHT,
    RANKINGS,
    BuildReport,
    CodeIndex,
    Function,
    Hit,
    source_files,
)

__all__ = [
    "DEFAULT_RANKING",
    "DEFAULT_RRF_K",
    "DEFAULT_WEIGHT",
    "RANKINGS",
    "BuildReport",
    "CodeIndex",
    "Function",
    "Hit",
    "source_files",
]
