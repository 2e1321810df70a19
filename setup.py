"""cpt-jax: contrastive pre-training of text and code embedding models in JAX."""

import pathlib

import setuptools

INSTALL_REQUIRES = [
    "jax>=0.10",
    "flax>=0.12",
    "optax>=0.2.5",
    "orbax-checkpoint>=0.12",
    "seqio>=0.0.19",
    "tensorflow>=2.18",
    "tensorflow-datasets>=4.9",
    "gin-config>=0.5",
    "numpy>=1.26",
    "sentencepiece>=0.2",
    "bm25s>=0.2",
    "tensorboardX>=2.6",
    "tqdm>=4.66",
    # Linear probes and the TF-IDF baseline (cpt_jax.evaluation.classification).
    "scikit-learn>=1.4",
    # Pretrained weights in Hugging Face layouts (cpt_jax.pretrained).
    "safetensors>=0.4",
    "tokenizers>=0.19",
    # tree-sitter with compiled grammars in their wheels (nothing fetched at run time), for
    # the Go / Java / JavaScript / PHP / Ruby code corpus.
    "tree-sitter>=0.25",
    "tree-sitter-go>=0.25",
    "tree-sitter-java>=0.23",
    "tree-sitter-javascript>=0.25",
    "tree-sitter-php>=0.25",
    "tree-sitter-ruby>=0.23",
    # The OpenAI-compatible embeddings server (cpt_jax.serve).
    "starlette>=0.47",
    "uvicorn>=0.30",
]

EXTRAS_REQUIRE = {
    # The notebook tests execute both notebooks in a real kernel (nbclient + ipykernel).
    "test": [
        "pytest>=8",
        "pytest-timeout>=2.3",
        "ruff>=0.6",
        "nbclient>=0.10",
        "nbformat>=5.9",
        "ipykernel>=6",
        "matplotlib>=3.8",
        # The optional faiss search of retrieval evaluation (tests/test_evaluation_faiss.py).
        "faiss-cpu>=1.8",
        # The server is tested through the real OpenAI client (tests/test_serve.py); the
        # export loads in sentence-transformers and transformers (tests/test_export.py); the
        # MTEB adapter's tests need mteb. torch is pinned here, not in constraints.txt: the
        # package index here resolves it to the CPU build, a GPU host to the CUDA one.
        "openai>=1.40",
        "torch==2.13.0",
        "sentence-transformers>=3.0",
        "mteb>=2.26,<3",
    ],
    "notebooks": [
        "jupyter>=1.0",
        "ipykernel>=6",
        "nbclient>=0.10",
        "nbformat>=5.9",
        "matplotlib>=3.8",
    ],
    # A faiss index for retrieval over large corpora (evaluate --search faiss_flat|faiss_hnsw).
    "faiss": ["faiss-cpu>=1.8"],
    "bench": ["torch==2.13.0", "sentence-transformers>=3.0", "openai>=1.40"],
    # MTEB on cpt-jax models (cpt_jax.mteb_adapter); mteb itself requires torch and
    # sentence-transformers, so its tests run where this extra is installed.
    "mteb": ["mteb>=2.26,<3", "torch==2.13.0", "sentence-transformers>=3.0"],
}

setuptools.setup(
    name="cpt-jax",
    version="0.1.0",
    description="Contrastive pre-training of text and code embeddings (cpt-text / cpt-code) in JAX",
    long_description=pathlib.Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(
        include=["cpt_jax", "cpt_jax.*", "data_pipelines", "data_pipelines.*"]
    ),
    package_data={"": ["*.gin"], "data_pipelines": ["pins/*.json"]},
    python_requires=">=3.11",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    license="Apache-2.0",
)
