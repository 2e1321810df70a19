"""Test setup: every test process sees 8 simulated CPU devices.

The flag must be set before jax initialises its backends, so it lives here rather than in a
fixture. Tests that need fewer devices build smaller meshes from `jax.devices()[:n]`.
"""

import atexit
import json
import os
import shutil
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()

# One XLA compilation cache for the test process and every launcher it starts: the suite
# compiles the same tiny programs again in each relaunch (kills, resumes, peers) and in each
# test that builds a fresh trainer. A cached executable is the same program, so runs stay bit
# for bit alike; the directory is new for each session, so nothing stale is ever read.
_CACHE_DIR = tempfile.mkdtemp(prefix="cpt-jax-test-xla-cache-")
atexit.register(shutil.rmtree, _CACHE_DIR, ignore_errors=True)
os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE_DIR
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"

import jax  # noqa: E402

jax.config.update("jax_threefry_partitionable", True)

import pytest  # noqa: E402

TEST_VOCAB_SIZE = 1024


@pytest.fixture(scope="session")
def stdlib_corpus(tmp_path_factory):
    """The real stdlib pairs corpus and a small SentencePiece vocabulary, built once."""
    from data_pipelines import python_code, vocabulary

    data_dir = str(tmp_path_factory.mktemp("stdlib_code"))
    manifest = python_code.build_stdlib_corpus(data_dir, log=lambda *_: None)
    model = vocabulary.train_from_corpus(data_dir, f"{data_dir}/spm", vocab_size=TEST_VOCAB_SIZE)
    return {
        "data_dir": data_dir,
        "vocabulary": model,
        "vocab_size": TEST_VOCAB_SIZE,
        "manifest": manifest,
    }


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, stdlib_corpus):
    """A tiny model directory written by the gin launcher (6 steps on the stdlib pairs, see
    `launch.py`), shared by the end-to-end and notebook tests: they read it, or resume it
    to no effect, and copy it before changing it."""
    from launch import run_launcher

    model_dir = str(tmp_path_factory.mktemp("runs") / "tiny")
    run_launcher(model_dir, stdlib_corpus)
    return model_dir


FAKE_PIP = """\
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_PIP_LOG"], "a") as f:
    f.write(json.dumps(args) + "\\n")
mode = os.environ["FAKE_PIP_MODE"]
if mode == "fail":
    sys.exit("ERROR: No matching distribution found")
dest = args[args.index("--dest") + 1]
with open(os.path.join(dest, os.environ["FAKE_PIP_FILE"]), "wb") as f:
    f.write(mode.encode())
"""


@pytest.fixture
def fake_pip(tmp_path, monkeypatch):
    """pip replaced by a script writing FAKE_PIP_MODE's text as the file (FAKE_PIP_FILE);
    returns a function listing its calls (for `cpt_jax.downloads.download`)."""
    from cpt_jax import downloads

    script = tmp_path / "fake_pip.py"
    script.write_text(FAKE_PIP)
    log = tmp_path / "pip_calls.jsonl"
    monkeypatch.setattr(downloads, "PIP_COMMAND", [sys.executable, str(script)])
    monkeypatch.setenv("FAKE_PIP_LOG", str(log))

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return calls
