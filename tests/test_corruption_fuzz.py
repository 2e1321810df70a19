"""Random corruptions of a model directory and of a corpus: each must end in a clear error
(an exception or exit code whose message names the damaged file or directory) or in the
uncorrupted result, never in an internal traceback, NaN output or a hang.

The model directory is read through the embed CLI (`cpt_jax.embed.main`, in this process:
the forward pass compiles once per architecture); the corpus through `corpus.split_files` and
`corpus.read_split`. A summary per kind of corruption and outcome is printed (`-s`).
"""

import collections
import contextlib
import io
import json
import os
import random
import shutil
import time

import numpy as np
import pytest

from cpt_jax.embed import main as embed_main
from data_pipelines import corpus

pytestmark = pytest.mark.slow

CASE_SECONDS = 60  # a case slower than this counts as a hang
TEXTS = ["read a file line by line", "sort a list in place", ""]


def files_below(root):
    return sorted(
        os.path.join(d, n) for d, _, names in os.walk(root) for n in names if "tmp" not in n
    )


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def corrupt(rng, root, kind):
    """Applies one corruption of `kind` to a random file below `root`; returns what it did."""
    paths = files_below(root)
    path = rng.choice(paths)
    data = read(path)
    if kind == "truncate":
        cut = rng.randrange(len(data)) if data else 0
        write(path, data[:cut])
        return f"truncated {os.path.relpath(path, root)} to {cut} of {len(data)} bytes"
    if kind == "bit_flip":
        if not data:
            return "empty file left alone"
        flipped = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(flipped))
            flipped[i] ^= 1 << rng.randrange(8)
        write(path, bytes(flipped))
        return f"flipped bits of {os.path.relpath(path, root)}"
    if kind == "delete":
        os.remove(path)
        return f"deleted {os.path.relpath(path, root)}"
    if kind == "swap":
        other = rng.choice(paths)
        a, b = read(path), read(other)
        write(path, b)
        write(other, a)
        return f"swapped {os.path.relpath(path, root)} and {os.path.relpath(other, root)}"
    assert kind == "edit_json"
    json_paths = [p for p in paths if p.endswith(".json")]
    path = rng.choice(json_paths)
    value = json.loads(read(path))
    edit_json(rng, value)
    write(path, json.dumps(value).encode())
    return f"edited {os.path.relpath(path, root)}"


REPLACEMENTS = [None, "", "../outside", "/etc/passwd", -1, 0, 10**9, 1.5, True, [], {}, "x"]


def edit_json(rng, value):
    """Deletes a key, or replaces a value, somewhere in a JSON object (in place)."""
    node = value
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            return
        key = rng.choice(keys)
        child = node[key]
        if isinstance(child, dict | list) and child and rng.random() < 0.6:
            node = child
            continue
        if isinstance(node, dict) and rng.random() < 0.4:
            del node[key]
        else:
            node[key] = rng.choice(REPLACEMENTS)
        return


def run_embed(model_dir, input_path, output):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = embed_main(["--checkpoint", model_dir, "--input", input_path,
                           "--kind", "document", "--output", output])  # fmt: skip
    return code, err.getvalue()


def classify(outcome, expected, names):
    """'correct', 'error' (naming one of `names`), or raises AssertionError."""
    code, message, result = outcome
    if code == 0:
        assert np.isfinite(result).all(), "NaN or inf output"
        np.testing.assert_array_equal(result, expected)
        return "correct"
    assert "Traceback" not in message, message
    assert any(name in message for name in names), message
    return "error"


def test_random_corruptions_end_in_a_clear_error_or_the_right_result(
    tiny_run, tmp_path, stdlib_corpus
):
    rng = random.Random(2026)
    kinds = ["truncate", "bit_flip", "delete", "swap", "edit_json"]
    summary = collections.Counter()
    input_path = str(tmp_path / "texts.jsonl")
    with open(input_path, "w") as f:
        f.writelines(json.dumps({"text": t}) + "\n" for t in TEXTS)
    reference = str(tmp_path / "reference.npy")
    assert run_embed(tiny_run, input_path, reference)[0] == 0
    expected = np.load(reference)

    # -- the model directory: 150 cases -----------------------------------------------------
    source = str(tmp_path / "model_source")
    shutil.copytree(tiny_run, source)
    shutil.rmtree(os.path.join(source, "train"), ignore_errors=True)  # not read by embed
    for case in range(150):
        kind = kinds[case % len(kinds)]
        model_dir = str(tmp_path / f"model_{case}")
        shutil.copytree(source, model_dir)
        what = corrupt(rng, model_dir, kind)
        output = str(tmp_path / f"out_{case}.npy")
        started = time.monotonic()
        try:
            code, message = run_embed(model_dir, input_path, output)
            result = np.load(output) if code == 0 else None
            outcome = classify((code, message, result), expected, [model_dir])
        except AssertionError as e:
            raise AssertionError(f"case {case}: {what}: {e}") from e
        assert time.monotonic() - started < CASE_SECONDS, f"case {case}: {what}: too slow"
        assert code != 0 or os.path.exists(output)
        summary["model", kind, outcome] += 1
        shutil.rmtree(model_dir)

    # -- the corpus: 60 cases ----------------------------------------------------------------
    source = stdlib_corpus["data_dir"]
    want = corpus.read_split(source, "test")
    for case in range(60):
        kind = kinds[case % len(kinds)]
        data_dir = str(tmp_path / f"corpus_{case}")
        shutil.copytree(source, data_dir, ignore=shutil.ignore_patterns(".units", "spm*"))
        what = corrupt(rng, data_dir, kind)
        try:
            try:
                got = corpus.read_split(data_dir, "test")
            except (OSError, ValueError) as e:
                assert data_dir in str(e), str(e)
                outcome = "error"
            else:
                assert got == want, "changed records"
                outcome = "correct"
        except AssertionError as e:
            raise AssertionError(f"corpus case {case}: {what}: {e}") from e
        summary["corpus", kind, outcome] += 1
        shutil.rmtree(data_dir)

    print("\ncorruptions tried and how they ended:")
    for key in sorted(summary):
        print(f"  {key[0]:6} {key[1]:9} {key[2]:7} {summary[key]}")
    assert sum(summary.values()) == 210
    assert summary["model", "edit_json", "error"] > 0 and summary["corpus", "bit_flip", "error"] > 0
