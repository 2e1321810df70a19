"""Debian binary packages as data: read a `.deb`'s files without installing it.

    path = downloads.download_deb(WORDNET, cache_dir="data/wordnet/downloads")
    for name, data in debian_packages.iter_deb_files(path, "usr/share/wordnet/"):
        ...

Pins (`PinnedDeb`) and their verified download (`download_deb`, by `apt-get download`; the
packages of this system are left alone) are in `cpt_jax.downloads`. `iter_deb_files` streams
the data archive through `dpkg-deb --fsys-tarfile` into Python's `tarfile`.
"""

from __future__ import annotations

import os
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator

from cpt_jax.downloads import run_tool


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
        result = run_tool(["dpkg-deb", "--root-owner-group", "--build", root, out_path])
        if result.returncode != 0:
            raise RuntimeError(f"dpkg-deb --build failed: {result.stderr.strip()}")
    return out_path
