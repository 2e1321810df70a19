"""Worker: training throughput of sentence-transformers on the same model shape and batch.

Builds a randomly initialised `BertModel` of the given shape (nothing is downloaded: the
model and a small WordPiece vocabulary are written to a temporary directory and loaded
from there, with the Hugging Face hub offline), wraps it as
`SentenceTransformer([Transformer, Pooling('mean')])`, and trains it with a plain PyTorch
loop on the same kind of batch as `jax_train.py`: pre-tokenised full-length ids, no padding.
A step is the loss's forward, `backward()`, gradient clipping at norm 1 and an AdamW update
(what `SentenceTransformerTrainer` does per step, without its data loading).

The loss is `MultipleNegativesRankingLoss` or `CachedMultipleNegativesRankingLoss`
(`mini_batch_size` rows per encoder pass) with directions query->doc and doc->query, one
softmax per direction (`partition_mode='per_direction'`): the symmetric InfoNCE that
cpt-jax trains with, at the same scale (20).

Settings (JSON): model (EncoderConfig fields), loss ('mnrl' or 'cached_mnrl'),
mini_batch_size, batch, query_length, document_length, warmup, steps, threads.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import tempfile  # noqa: E402
import warnings  # noqa: E402

import common  # noqa: E402
import torch  # noqa: E402

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_model(model: dict, max_seq_length: int, device: str):
    """A random-init SentenceTransformer with a BERT encoder of `model`'s shape, mean pooled."""
    import transformers
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    activation = {"gelu_exact": "gelu", "gelu": "gelu_new", "relu": "relu"}[model["activation"]]
    config = transformers.BertConfig(
        vocab_size=model["vocab_size"],
        hidden_size=model["d_model"],
        num_hidden_layers=model["num_layers"],
        num_attention_heads=model["num_heads"],
        intermediate_size=model["d_ff"],
        max_position_embeddings=model["max_length"],
        hidden_act=activation,
        hidden_dropout_prob=model["dropout_rate"],
        attention_probs_dropout_prob=model["dropout_rate"],
        layer_norm_eps=model["layer_norm_eps"],
    )
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as directory:
        transformers.BertModel(config).save_pretrained(directory)
        vocab = os.path.join(directory, "vocab.txt")
        with open(vocab, "w") as f:  # the tokenizer is never used: inputs are token ids
            f.write("\n".join(SPECIAL_TOKENS) + "\n")
        transformers.BertTokenizerFast(vocab_file=vocab).save_pretrained(directory)
        encoder = Transformer(directory, max_seq_length=max_seq_length)
    pooling = Pooling(model["d_model"], "mean")
    return SentenceTransformer(modules=[encoder, pooling], device=device)


def build_loss(name: str, model, mini_batch_size: int):
    """MNRL or CachedMNRL, symmetric (query->doc and doc->query, a softmax for each)."""
    from sentence_transformers.sentence_transformer import losses

    options = {
        "scale": 20.0,
        "directions": ("query_to_doc", "doc_to_query"),
        "partition_mode": "per_direction",
    }
    if name == "mnrl":
        return losses.MultipleNegativesRankingLoss(model, **options)
    if name == "cached_mnrl":
        return losses.CachedMultipleNegativesRankingLoss(
            model, mini_batch_size=mini_batch_size, **options
        )
    raise ValueError(f"unknown loss {name!r}")


def make_features(batch: int, length: int, vocab_size: int, seed: int, device: str) -> dict:
    """Pre-tokenised full-length inputs: random ids 3..vocab, attention everywhere."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab_size, (batch, length), generator=generator)
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device)}


def main() -> None:
    config = common.settings()
    torch.set_num_threads(config.get("threads") or os.cpu_count())
    warnings.filterwarnings("ignore")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        # JAX's default float32 matmul on NVIDIA GPUs uses TF32 tensor cores; PyTorch's
        # default is full float32. Match JAX, so both sides run the same arithmetic.
        torch.set_float32_matmul_precision("high")
    batch, vocab_size = config["batch"], config["model"]["vocab_size"]
    max_length = max(config["query_length"], config["document_length"])
    model = build_model(config["model"], max_length, device)
    model.train()
    loss_fn = build_loss(config["loss"], model, config.get("mini_batch_size", 32))
    queries = make_features(batch, config["query_length"], vocab_size, 1, device)
    documents = make_features(batch, config["document_length"], vocab_size, 2, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    rss_after_init = common.current_rss_gib()
    losses = []

    def step():
        # The loss may add keys to the feature dicts: give it fresh copies every step.
        loss = loss_fn([dict(queries), dict(documents)], None)
        loss.backward()  # CachedMNRL: a hook re-embeds each mini-batch with the cached grads
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))  # waits for the step (also on CUDA)

    durations = common.time_steps(
        step, config["warmup"], config["steps"], config.get("min_seconds", 0.0)
    )
    result = common.throughput(batch, durations)
    flops = common.train_flops_per_pair(
        config["model"], config["query_length"], config["document_length"], batch
    )
    device_peak = torch.cuda.max_memory_allocated() / common.GIB if device == "cuda" else None
    common.emit(
        {
            **result,
            "flops_per_pair": flops,
            "model_flops_per_s": flops * result["pairs_per_s"],
            "loss": losses[-1],
            "rss_after_init_gib": rss_after_init,
            "device_peak_gib": device_peak,
            "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
            "threads": torch.get_num_threads(),
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
        }
    )


if __name__ == "__main__":
    main()
