"""Pinned Debian binary packages as data: download a `.deb`, verify it, read its files.

    path = debian_packages.download_deb(WORDNET, cache_dir="data/wordnet/downloads")
    for name, data in debian_packages.iter_deb_files(path, "usr/share/wordnet/"):
        ...

A `PinnedDeb` names a package, its exact version and the sha256 of its `.deb`. `download_deb`
fetches it with `apt-get download` (no installation; the packages of this system are left
alone) into a cache directory, and checks the hash: a file whose hash differs is never used.
`apt-get update` runs only when apt does not know the pinned version. Debian mirrors drop old
versions (a stable point release replaces a package's version), so a pin can stop working:
the error then says so, and the fix is to pin the new version and its sha256 (both printed
by `apt-cache show PACKAGE`). A `.deb` placed in the cache directory by hand under the
expected name (`PinnedDeb.filename`) is used as is when its hash matches, without apt.

`iter_deb_files` reads a `.deb` without installing it: `dpkg-deb --fsys-tarfile` streams the
data archive into Python's `tarfile`.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from typing import NamedTuple
from urllib.parse import quote

from cpt_jax import files


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


class PackageUnavailableError(RuntimeError):
    """The pinned package version cannot be fetched from the configured apt sources."""


def _run(args: list[str], cwd: str | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as e:
        raise PackageUnavailableError(
            f"{args[0]} not found: this needs Debian's apt and dpkg tools (Debian, Ubuntu); "
            "elsewhere, put the pinned .deb into the cache directory by hand"
        ) from e


def _apt_knows(pin: PinnedDeb) -> bool:
    """Whether apt's package lists have this exact version (no network)."""
    result = _run(["apt-cache", "show", f"{pin.package}={pin.version}"])
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

    Raises:
      PackageUnavailableError: apt does not have this version even after `apt-get update`
        (the mirror may have dropped it: update the pin), or apt is missing.
      RuntimeError: `apt-get download` failed for another reason (the message has apt's).
      ValueError: the downloaded file's sha256 differs from the pin (the file is removed).
    """
    os.makedirs(cache_dir, exist_ok=True)
    path = os.path.join(cache_dir, pin.filename)
    if os.path.exists(path):
        actual = files.sha256_of(path)
        if actual == pin.sha256:
            return path
        log(f"{path}: sha256 {actual} is not the pinned {pin.sha256}; downloading again")
        os.remove(path)
    if not _apt_knows(pin):
        log(f"apt does not list {pin.package}={pin.version}: running apt-get update")
        update = _run(["apt-get", "update"])
        if update.returncode != 0:
            raise _unavailable(pin, f"apt-get update failed: {update.stderr}")
        if not _apt_knows(pin):
            raise _unavailable(pin, "apt-cache show finds no such version after apt-get update")
    # Download into a fresh directory (apt names the file itself), then move it into place.
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".download-") as tmp:
        result = _run(["apt-get", "download", f"{pin.package}={pin.version}"], cwd=tmp)
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
            raise ValueError(
                f"{pin.package}={pin.version}: the downloaded .deb has sha256 {actual}, "
                f"the pin says {pin.sha256}; not used (a changed archive or a wrong pin)"
            )
        shutil.move(downloaded[0], path)
    log(f"downloaded {pin.package}={pin.version} -> {path} (sha256 verified)")
    return path


def iter_deb_files(deb_path: str, prefix: str = "") -> Iterator[tuple[str, bytes]]:
    """`(path, contents)` of the regular files in a `.deb` whose path starts with `prefix`.

    Paths are as installed, without the leading `./` or `/` (`usr/share/wordnet/data.noun`),
    in archive order. Links and directories are not returned. Nothing is installed.

    Raises:
      FileNotFoundError: no such `.deb`.
      RuntimeError: `dpkg-deb` is missing or cannot read the file (its message included).
    """
    if not os.path.isfile(deb_path):
        raise FileNotFoundError(f"{deb_path}: no such .deb file")
    prefix = prefix.lstrip("./").lstrip("/")
    try:
        process = subprocess.Popen(
            ["dpkg-deb", "--fsys-tarfile", deb_path],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except FileNotFoundError as e:
        raise RuntimeError("dpkg-deb not found: reading a .deb needs dpkg (Debian/Ubuntu)") from e
    finished = False
    try:
        try:
            with tarfile.open(fileobj=process.stdout, mode="r|") as archive:
                for member in archive:
                    name = member.name
                    name = name[2:] if name.startswith("./") else name.lstrip("/")
                    if member.isfile() and name.startswith(prefix):
                        data = archive.extractfile(member)
                        yield name, data.read() if data is not None else b""
        except tarfile.TarError as e:
            error = process.stderr.read().decode(errors="replace").strip()
            raise RuntimeError(f"{deb_path}: not a readable .deb ({error or e})") from e
        finished = True
    finally:
        process.stdout.close()
        returncode = process.wait()
        error = process.stderr.read().decode(errors="replace").strip()
        process.stderr.close()
    if finished and returncode != 0:
        raise RuntimeError(f"{deb_path}: dpkg-deb failed (exit {returncode}): {error}")


def build_deb(files: dict[str, bytes], out_path: str, package: str, version: str) -> str:
    """Writes a minimal `.deb` holding `files` (installed path -> contents) at `out_path`.

    For tests and fixtures: a package that `iter_deb_files` reads like a real one (built by
    `dpkg-deb --build`, architecture `all`). Returns `out_path`.
    """
    with tempfile.TemporaryDirectory() as root:
        os.makedirs(os.path.join(root, "DEBIAN"))
        control = (
            f"Package: {package}\nVersion: {version}\nArchitecture: all\n"
            "Maintainer: cpt-jax tests <tests@example.org>\nDescription: test fixture\n"
        )
        with open(os.path.join(root, "DEBIAN", "control"), "w") as f:
            f.write(control)
        for path, data in files.items():
            target = os.path.join(root, path.lstrip("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as f:
                f.write(data)
        result = _run(["dpkg-deb", "--root-owner-group", "--build", root, out_path])
        if result.returncode != 0:
            raise RuntimeError(f"dpkg-deb --build failed: {result.stderr.strip()}")
    return out_path
