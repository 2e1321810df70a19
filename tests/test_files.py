"""Atomic writes: readers see the old file or the new one, never half of one."""

import json

import pytest

from cpt_jax import files


def test_atomic_write_replaces_and_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "manifest.json"
    files.write_json_atomic(str(path), {"b": 1, "a": 2})
    assert path.read_text() == '{\n  "a": 2,\n  "b": 1\n}\n'
    with pytest.raises(RuntimeError), files.atomic_open(str(path)) as f:
        f.write("half")
        raise RuntimeError("killed mid-write")
    assert json.loads(path.read_text()) == {"a": 2, "b": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]  # no temp left
    files.write_bytes_atomic(str(path), b"new")
    assert path.read_bytes() == b"new"
