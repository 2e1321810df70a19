"""CodeSearchNet's published jsonl(.gz) format read into a pairs corpus, bad lines counted."""

import gzip
import json

import pytest

from data_pipelines import build, codesearchnet, corpus


def csn_line(docstring, code, partition="train", **extra):
    record = {
        "repo": "octo/demo",
        "path": "demo/util.py",
        "func_name": "util.f",
        "original_string": code,
        "language": "python",
        "code": code,
        "code_tokens": code.split(),
        "docstring": docstring,
        "docstring_tokens": docstring.split(),
        "sha": "0" * 40,
        "url": "https://example.invalid/demo",
        "partition": partition,
        **extra,
    }
    return (json.dumps(record) + "\n").encode()


def test_reads_csn_files_and_counts_what_it_skips(tmp_path):
    doc = "Return the sum of the squares.\n\nLonger explanation that is not the query."
    good = [
        csn_line(doc, "def f(xs):\n    return sum(x * x for x in xs)\n"),
        csn_line("Open the file for reading.", "def g(p):\n    return open(p)\n", "valid"),
        csn_line("Parse a date string.", "func ParseDate(s string) {}", "test", language="go"),
    ]
    bad = [
        b"{not json\n",
        b'{"docstring": "caf\xe9", "code": "x", "partition": "train"}\n',  # latin-1 byte
        json.dumps({"docstring": "No code here."}).encode() + b"\n",
        csn_line("   ", "def h():\n    pass\n"),
        csn_line("Another doc.", "def f(xs):\n  return   sum(x * x for x in xs)\n"),  # dup
        csn_line("Odd partition.", "def k():\n    return 1\n", "holdout"),
        b"\n",
    ]
    gz = tmp_path / "python_train_0.jsonl.gz"
    with gzip.open(gz, "wb") as f:
        f.writelines(good[:1] + bad[:4])
    plain = tmp_path / "mixed.jsonl"
    plain.write_bytes(b"".join(good[1:] + bad[4:]))
    out = tmp_path / "corpus"
    assert build.main(["codesearchnet", str(gz), str(plain), "--out_dir", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"train": 1, "validation": 1, "test": 1}
    assert manifest["skipped"] == {
        "duplicate": 1,
        "empty_docstring": 1,
        "invalid_json": 1,
        "missing_field": 1,
        "non_utf8": 1,
        "unknown_partition": 1,
    }
    assert [u["records"] for u in manifest["units"]] == [1, 3]  # before de-duplication
    (train,) = corpus.read_split(str(out), "train")
    assert train["query"] == "Return the sum of the squares."
    assert train["source"] == "python_train_0.jsonl.gz:1"
    assert isinstance(train["query_id"], int) and train["query_id"] != train["document_id"]
    (test,) = corpus.read_split(str(out), "test")
    assert test["language"] == "go" and test["document"].startswith("func ParseDate")


def test_unreadable_input_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl.gz: no such CodeSearchNet file"):
        codesearchnet.CodeSearchNetBuilder([str(tmp_path / "nope.jsonl.gz")])
