"""Dynamic batching of embedding requests over one `Embedder`, with no compilation after
warm-up.

Requests (a list of texts and a kind) queue up; one worker thread takes whatever has
arrived within `max_wait_s` of the first (up to `max_batch` rows), groups the rows by kind,
sorts them by token length and runs them in batches of similar length, so a short text never
pays for the longest one in its company. Every forward pass has a shape
`[batch bucket, length bucket]`: batch sizes are powers of 4 up to `max_batch` (1, 4, 16,
64), widths the Embedder's powers of two from 16 up to each kind's sequence length. `warm_up`
compiles all of them; a request never compiles after it.

Example:
  batcher = Batcher(Embedder.from_checkpoint("runs/quickstart"))
  batcher.warm_up()
  vectors, tokens = batcher.submit(["sort a list"], "query").result()
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import queue
import threading
import time
from collections.abc import Sequence

import numpy as np

from cpt_jax.embed import KINDS, Embedder


def batch_buckets(max_batch: int) -> tuple[int, ...]:
    """The padded batch sizes: powers of 4 below `max_batch`, then `max_batch`."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be positive, got {max_batch}")
    sizes, size = [], 1
    while size < max_batch:
        sizes.append(size)
        size *= 4
    return (*sizes, max_batch)


def length_buckets(max_length: int) -> tuple[int, ...]:
    """The widths a batch of one kind is trimmed to (see `embed._trim_to_bucket`)."""
    widths, width = [], 16
    while width < max_length:
        widths.append(width)
        width *= 2
    return (*widths, max_length)


@dataclasses.dataclass
class _Request:
    tokens: np.ndarray  # [n, max_length of kind]
    kind: str
    future: concurrent.futures.Future
    counts: np.ndarray  # [n] tokens per text, delimiters included
    out: np.ndarray  # [n, dim], filled by the worker


class Batcher:
    """Embeds the texts of concurrent requests in shared, length-sorted batches.

    Args:
      embedder: the model.
      max_batch: rows per forward pass at most.
      max_wait_s: how long the worker waits for more requests after the first one.
    """

    def __init__(self, embedder: Embedder, max_batch: int = 64, max_wait_s: float = 0.002):
        self.embedder = embedder
        self.batch_sizes = batch_buckets(max_batch)
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.requests_done = 0  # counters, for tests and benchmarks
        self.forward_passes = 0
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._worker = threading.Thread(target=self._run, name="cpt_jax-batcher", daemon=True)
        self._worker.start()

    def warm_up(self) -> int:
        """Compiles every batch and length bucket of both kinds; returns how many shapes."""
        shapes = 0
        for kind in KINDS:
            max_length = self.embedder.max_lengths[kind]
            for width in length_buckets(max_length):
                tokens = np.zeros((1, max_length), np.int32)
                tokens[0, :width] = 1  # a row of exactly `width` tokens
                for size in self.batch_sizes:
                    self.embedder.embed_tokens(tokens, size)
                    shapes += 1
        return shapes

    def submit(self, texts: Sequence[str], kind: str) -> concurrent.futures.Future:
        """Queues `texts`; the future gives `(vectors [n, dim] float32, token counts [n])`.

        Tokenises here, in the caller's thread, so bad input fails at once.
        """
        tokens = self.embedder.tokenize(texts, kind)
        future: concurrent.futures.Future = concurrent.futures.Future()
        counts = (tokens != 0).sum(axis=1)
        if not len(tokens):
            future.set_result((np.zeros((0, self.embedder.dim), np.float32), counts))
            return future
        out = np.zeros((len(tokens), self.embedder.dim), np.float32)
        self._queue.put(_Request(tokens, kind, future, counts, out))
        return future

    def close(self) -> None:
        self._queue.put(None)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            requests, rows = [first], len(first.tokens)
            deadline = time.monotonic() + self.max_wait_s
            while rows < self.max_batch:
                try:
                    more = self._queue.get(timeout=max(deadline - time.monotonic(), 0))
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # close after this round
                    break
                requests.append(more)
                rows += len(more.tokens)
            self._embed(requests)

    def _embed(self, requests: list[_Request]) -> None:
        try:
            for kind in KINDS:
                group = [r for r in requests if r.kind == kind]
                if not group:
                    continue
                rows = [(r, i) for r in group for i in range(len(r.tokens))]
                tokens = np.concatenate([r.tokens for r in group])
                order = np.argsort(np.concatenate([r.counts for r in group]), kind="stable")
                for start in range(0, len(order), self.max_batch):
                    chunk = order[start : start + self.max_batch]
                    size = next(s for s in self.batch_sizes if s >= len(chunk))
                    vectors = self.embedder.embed_tokens(tokens[chunk], size)
                    self.forward_passes += 1
                    for row, vector in zip(chunk, vectors):
                        request, i = rows[row]
                        request.out[i] = vector
            for request in requests:
                request.future.set_result((request.out, request.counts))
            self.requests_done += len(requests)
        except Exception as error:  # the worker must survive any one batch
            for request in requests:
                if not request.future.done():
                    request.future.set_exception(error)
