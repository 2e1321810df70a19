"""Pinned downloads (`cpt_jax.downloads`): pip and apt replaced by stand-ins that log their
calls, so that the cache, the hash checks and the errors are tested offline."""

import hashlib
import os

import pytest

from cpt_jax import downloads
from cpt_jax.files import sha256_of
from data_pipelines import debian_packages

QUIET = {"log": lambda *_: None}


def test_pip_selection_follows_the_file_name():
    cp = "numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    assert downloads.pip_selection(cp) == [
        "--only-binary",
        ":all:",
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
        "--abi",
        "cp311",
        "--platform",
        "manylinux_2_17_x86_64",
        "--platform",
        "manylinux2014_x86_64",
    ]
    pure = downloads.pip_selection("jedi-0.19.1-py2.py3-none-any.whl")
    assert pure[pure.index("--implementation") + 1] == "py"
    assert pure[pure.index("--platform") + 1] == "any"
    assert downloads.pip_selection("demo-1.0.tar.gz") == ["--no-binary", ":all:"]


def test_download_verifies_the_hash_and_reuses_the_cache(tmp_path, monkeypatch, fake_pip):
    filename = "demo-1.0-py3-none-any.whl"
    pin = downloads.PinnedArchive(
        "demo", "1.0", filename, hashlib.sha256(b"the real wheel").hexdigest()
    )
    cache = tmp_path / "cache"
    monkeypatch.setenv("FAKE_PIP_FILE", filename)

    monkeypatch.setenv("FAKE_PIP_MODE", "a tampered wheel")
    with pytest.raises(downloads.HashMismatchError) as error:
        downloads.download(pin, str(cache), **QUIET)
    tampered = hashlib.sha256(b"a tampered wheel").hexdigest()
    assert "demo==1.0" in str(error.value)
    assert pin.sha256 in str(error.value) and tampered in str(error.value)
    assert not (cache / filename).exists()  # a file that failed its check is not kept

    monkeypatch.setenv("FAKE_PIP_MODE", "the real wheel")
    path = downloads.download(pin, str(cache), **QUIET)
    assert path == str(cache / filename)
    assert (cache / filename).read_bytes() == b"the real wheel"
    assert sorted(p.name for p in cache.iterdir()) == [filename]  # no temporary left
    (call,) = fake_pip()[1:]
    assert call[:2] == ["download", "--no-deps"] and call[-1] == "demo==1.0"
    assert call[call.index("--platform") + 1] == "any"

    monkeypatch.setenv("FAKE_PIP_MODE", "fail")  # a second build is offline
    assert downloads.download(pin, str(cache), **QUIET) == path
    assert len(fake_pip()) == 2

    (cache / filename).write_bytes(b"truncated")  # a damaged cache file is fetched again
    with pytest.raises(downloads.DownloadError, match="No matching distribution"):
        downloads.download(pin, str(cache), **QUIET)
    monkeypatch.setenv("FAKE_PIP_FILE", "demo-1.0.tar.gz")
    monkeypatch.setenv("FAKE_PIP_MODE", "the real wheel")
    with pytest.raises(downloads.DownloadError, match="not the pinned"):
        downloads.download(pin, str(cache), **QUIET)


# ----------------------------------------------------------------------------- Debian


def _fake_apt(tmp_path, monkeypatch, deb: str, known: list[str], after_update: list[str]):
    """`apt-get` and `apt-cache` stand-ins on PATH: they know the `pkg=version`s in `known`
    (`after_update` once `apt-get update` ran), download `deb`, and log their calls."""
    bin_dir, state = tmp_path / "bin", tmp_path / "apt-state"
    bin_dir.mkdir()
    state.mkdir()
    (state / "known").write_text("".join(f"{k}\n" for k in known))
    (state / "after_update").write_text("".join(f"{k}\n" for k in after_update))
    scripts = {
        "apt-cache": f"""#!/bin/sh
echo "apt-cache $*" >> {state}/log
grep -qxF "$2" {state}/known && echo "Package: ${{2%%=*}}" && exit 0
exit 100
""",
        "apt-get": f"""#!/bin/sh
echo "apt-get $*" >> {state}/log
if [ "$1" = update ]; then cp {state}/after_update {state}/known; exit 0; fi
if ! grep -qxF "$2" {state}/known; then echo "E: Version '$2' was not found" >&2; exit 100; fi
cp {deb} ./fake_1.0_all.deb
""",
    }
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return state / "log"


@pytest.fixture
def fake_deb(tmp_path):
    files = {"usr/share/fake/a.txt": b"alpha"}
    deb = debian_packages.build_deb(files, str(tmp_path / "fake.deb"), "fake", "1:1.0-1")
    return deb, downloads.PinnedDeb("fake", "1:1.0-1", sha256_of(deb))


def test_download_deb_verifies_and_caches(fake_deb, tmp_path, monkeypatch):
    deb, pin = fake_deb
    log = _fake_apt(tmp_path, monkeypatch, deb, known=["fake=1:1.0-1"], after_update=[])
    cache = str(tmp_path / "cache")
    path = downloads.download_deb(pin, cache, log=lambda *_: None)
    assert path == os.path.join(cache, "fake_1%3A1.0-1.deb")
    assert sha256_of(path) == pin.sha256
    assert log.read_text() == "apt-cache show fake=1:1.0-1\napt-get download fake=1:1.0-1\n"
    assert downloads.download_deb(pin, cache, log=lambda *_: None) == path
    assert log.read_text().count("\n") == 2  # cached: apt was not asked again
    assert os.listdir(cache) == ["fake_1%3A1.0-1.deb"]


def test_download_deb_updates_lists_only_for_an_unknown_version(fake_deb, tmp_path, monkeypatch):
    deb, pin = fake_deb
    log = _fake_apt(tmp_path, monkeypatch, deb, known=[], after_update=["fake=1:1.0-1"])
    downloads.download_deb(pin, str(tmp_path / "cache"), log=lambda *_: None)
    assert log.read_text().split("\n")[:3] == [
        "apt-cache show fake=1:1.0-1",
        "apt-get update",
        "apt-cache show fake=1:1.0-1",
    ]


def test_download_deb_errors(fake_deb, tmp_path, monkeypatch):
    deb, pin = fake_deb
    _fake_apt(tmp_path, monkeypatch, deb, known=["fake=1:1.0-1"], after_update=["fake=1:1.0-1"])
    cache = str(tmp_path / "cache")
    gone = pin._replace(version="0.9-1")
    with pytest.raises(downloads.PackageUnavailableError, match="update the pin"):
        downloads.download_deb(gone, cache, log=lambda *_: None)
    wrong = pin._replace(sha256="0" * 64)
    with pytest.raises(ValueError, match=f"sha256 {pin.sha256}.*pin says 0000"):
        downloads.download_deb(wrong, cache, log=lambda *_: None)
    assert [n for n in os.listdir(cache) if not n.startswith(".")] == []
