"""Debian's archive as data: the package lists (fetched privately, pinned, parsed) and the
files of a `.deb`, read without installing anything.

    path = downloads.download_deb(WORDNET, cache_dir="data/wordnet/downloads")
    for name, data in debian_packages.iter_deb_files(path, "usr/share/wordnet/"):
        ...

Package lists: `fetch_lists` runs `apt-get update` into a private lists directory (nothing of
the system's apt state is written; apt verifies the Release signature and the lists' hashes);
`find_list_files`, `describe_lists`, `read_release` and `check_pins` say what a lists
directory holds and check it against pinned sha256s (`PINNED_SHA256`: bookworm's lists of
`PINNED_RELEASE_DATE`); `iter_paragraphs` parses their deb822 paragraphs.

Pins of `.deb` files (`PinnedDeb`) and their verified download (`download_deb`, by `apt-get
download`; the packages of this system are left alone) are in `cpt_jax.downloads`.
`iter_deb_files` streams a `.deb`'s data archive through `dpkg-deb --fsys-tarfile` into
Python's `tarfile`.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from cpt_jax.downloads import run_tool
from cpt_jax.files import sha256_of

DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SUITE = "bookworm"
COMPONENT = "main"
ARCHITECTURE = "amd64"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
PACKAGES_PATH = f"{COMPONENT}/binary-{ARCHITECTURE}/Packages"
TRANSLATION_PATH = f"{COMPONENT}/i18n/Translation-en"
# The lists of the default corpus (Release "Version: 12.15", fetched from deb.debian.org).
PINNED_RELEASE_DATE = "Sat, 11 Jul 2026 10:16:37 UTC"
PINNED_SHA256 = {
    PACKAGES_PATH: "515e692f2c4121c6fcec444ef100cc18f79a991910615f3a88c8b7becfc94d2f",
    TRANSLATION_PATH: "62f59c3cdca9786e4f7adf9002f9f5729a684adcb4667e58e448dec9b5a46c7f",
}

_COMPRESSED = (".gz", ".xz", ".bz2", ".lz4")
_PACKAGES_FILE = re.compile(r"_Packages(?:\.(?:gz|xz|bz2|lz4))?$")
_TRANSLATION_FILE = re.compile(r"_i18n_Translation-en(?:\.(?:gz|xz|bz2|lz4))?$")
_RELEASE_FILE = re.compile(r"_(?:In)?Release$")
# deb822 field names: printable ASCII except ':', not starting with '#' or '-'.
_FIELD = re.compile(r"^(?![#-])([!-9;-~]+):(.*)$")


# ----------------------------------------------------------------------------- deb822


def read_list_file(path: str) -> bytes:
    """A list file's bytes, decompressed by its suffix (.lz4 needs the `lz4` command)."""
    if path.endswith(".gz"):
        with gzip.open(path, "rb") as f:
            return f.read()
    if path.endswith(".xz"):
        with lzma.open(path, "rb") as f:
            return f.read()
    if path.endswith(".bz2"):
        with bz2.open(path, "rb") as f:
            return f.read()
    if path.endswith(".lz4"):
        if shutil.which("lz4") is None:
            raise RuntimeError(f"{path}: reading .lz4 lists needs the `lz4` command")
        return subprocess.run(["lz4", "-dc", path], check=True, capture_output=True).stdout
    with open(path, "rb") as f:
        return f.read()


def iter_paragraphs(data: bytes, skipped: Counter) -> Iterator[tuple[int, dict[str, str]]]:
    """`(first line number, fields)` of each deb822 paragraph of `data` (a Packages file...).

    Paragraphs are separated by blank lines. Field names are lower-cased; a value is the rest
    of its first line (leading whitespace removed) followed, for multi-line fields, by "\\n"
    and the continuation lines as they are (each starting with a space or tab), so a
    description's `Description-md5` can be checked. `#` comment lines are ignored. Dropped
    and counted: `non_utf8_paragraph`, `malformed_paragraph` (a line that is neither a field
    nor a continuation, a continuation before the first field, a repeated field).
    """
    lines = data.split(b"\n")
    start, block = 0, []
    for lineno, line in enumerate([*lines, b""], start=1):
        line = line.rstrip(b"\r")
        if line.strip():
            if not block:
                start = lineno
            block.append(line)
            continue
        if not block:
            continue
        try:
            text_lines = [raw.decode("utf-8") for raw in block]
        except UnicodeDecodeError:
            skipped["non_utf8_paragraph"] += 1
            block = []
            continue
        block = []
        fields = _parse_fields(text_lines)
        if fields is None:
            skipped["malformed_paragraph"] += 1
            continue
        yield start, fields


def _parse_fields(lines: Sequence[str]) -> dict[str, str] | None:
    """The fields of one paragraph's lines, or None when the paragraph is malformed."""
    fields: dict[str, list[str]] = {}
    current = None
    for line in lines:
        if line.startswith("#"):
            continue
        if line[:1] in (" ", "\t"):
            if current is None:
                return None
            fields[current].append(line)
            continue
        match = _FIELD.match(line)
        if match is None or match.group(1).lower() in fields:
            return None
        current = match.group(1).lower()
        fields[current] = [match.group(2).lstrip(" \t")]
    return {name: "\n".join(parts) for name, parts in fields.items()}


def description_md5(description: str) -> str:
    """The `Description-md5` of a full description field value (short line + long lines)."""
    return hashlib.md5((description + "\n").encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------------- list files


class ListFiles(NamedTuple):
    """The apt list files of one lists directory."""

    packages: list[str]
    translations: list[str]
    releases: list[str]


def find_list_files(lists_dir: str) -> ListFiles:
    """The `*_Packages`, `*_i18n_Translation-en` and `*_(In)Release` files of `lists_dir`."""
    if not os.path.isdir(lists_dir):
        raise FileNotFoundError(f"--lists_dir {lists_dir}: no such directory")
    names = sorted(os.listdir(lists_dir))
    found = ListFiles(
        *(
            [os.path.join(lists_dir, n) for n in names if pattern.search(n)]
            for pattern in (_PACKAGES_FILE, _TRANSLATION_FILE, _RELEASE_FILE)
        )
    )
    if not found.packages:
        raise FileNotFoundError(f"{lists_dir}: no *_Packages list file")
    if not found.translations:
        raise FileNotFoundError(
            f"{lists_dir}: no *_i18n_Translation-en list file (the long descriptions; apt "
            "fetches it with -o Acquire::Languages=en)"
        )
    return found


def release_path(list_file: str) -> str | None:
    """A list file's path in its Release file: `x_dists_bookworm_main_binary-amd64_Packages`
    -> `main/binary-amd64/Packages` (None for a name without `_dists_<suite>_`)."""
    name = os.path.basename(list_file)
    for suffix in _COMPRESSED:
        name = name.removesuffix(suffix)
    _, dists, rest = name.partition("_dists_")
    if not dists or "_" not in rest:
        return None
    return rest.split("_", 1)[1].replace("_", "/")


def read_release(path: str) -> dict:
    """The Origin, Suite, Version, Codename, Date and `SHA256` table of a (In)Release file."""
    with open(path, "rb") as f:
        text = f.read().decode("utf-8", errors="replace")
    if text.startswith("-----BEGIN PGP SIGNED MESSAGE-----"):  # InRelease: strip the armour
        text = text.split("\n\n", 1)[1].split("\n-----BEGIN PGP SIGNATURE-----", 1)[0]
    fields = next((f for _, f in iter_paragraphs(text.encode(), Counter())), {})
    info = {
        key: fields[key.lower()]
        for key in ("Origin", "Suite", "Version", "Codename", "Date")
        if key.lower() in fields
    }
    sha256 = {}
    for line in fields.get("sha256", "").split("\n"):
        parts = line.split()
        if len(parts) == 3:
            sha256[parts[2]] = parts[0]
    return {**info, "sha256": sha256}


def describe_lists(files: ListFiles) -> dict:
    """What the manifest records about the lists: releases, and every file's sha256."""
    releases = [(os.path.basename(p), read_release(p)) for p in files.releases]
    described = []
    for path in [*files.packages, *files.translations]:
        digest, key = sha256_of(path), release_path(path)
        listed = [r["sha256"][key] for _, r in releases if key in r["sha256"]]
        described.append(
            {
                "file": os.path.basename(path),
                "release_path": key,
                "sha256": digest,
                # Compressed files are listed under their own name: no check then (None).
                "matches_release": (digest in listed) if listed else None,
            }
        )
    return {
        "releases": [
            {"file": name, **{k: v for k, v in r.items() if k != "sha256"}} for name, r in releases
        ],
        "files": described,
    }


def check_pins(described: dict, expected: dict[str, str]) -> None:
    """Raises when a pinned list file (by release path) is missing or has another sha256."""
    by_path = {f["release_path"]: f for f in described["files"] if f["release_path"]}
    dates = ", ".join(r.get("Date", "?") for r in described["releases"]) or "unknown"
    for key, sha256 in sorted(expected.items()):
        found = by_path.get(key)
        if found is None or found["sha256"] != sha256:
            what = "is missing" if found is None else f"has sha256 {found['sha256']}"
            raise ValueError(
                f"pinned list file {key} {what}, expected {sha256} (the pinned release is of "
                f"{PINNED_RELEASE_DATE}; these lists: {dates}). The mirror has moved on: "
                "build with --lists_dir from the pinned files, pin the new files with "
                "--expect_sha256 PATH=HEX (or update PINNED_SHA256), or pass --unpinned"
            )


def _pins_match(lists_dir: str, expected: dict[str, str]) -> bool:
    try:
        check_pins(describe_lists(find_list_files(lists_dir)), expected)
    except (FileNotFoundError, ValueError):
        return False
    return True


def fetch_lists(
    cache_dir: str,
    *,
    mirror: str = DEFAULT_MIRROR,
    suite: str = DEFAULT_SUITE,
    expected: dict[str, str] | None = None,
    timeout: float = 600,
) -> str:
    """Fetches `suite` main's Packages and Translation-en into `cache_dir/lists`; its path.

    Private: a sources list, lists directory and cache of our own (`apt-get update -o
    Dir::State::Lists=... -o Dir::Etc::SourceList=...`), no binary cache files, no locks on
    the system's apt state; apt verifies the Release signature (Debian's keyring) and the
    lists' hashes. Lists are stored uncompressed. When `expected` pins are given and the
    cached lists already match them, nothing is fetched.
    """
    cache_dir = os.path.abspath(cache_dir)
    lists = os.path.join(cache_dir, "lists")
    if expected and _pins_match(lists, expected):
        return lists
    apt_dir = os.path.join(cache_dir, "apt")
    for path in (os.path.join(lists, "partial"), os.path.join(apt_dir, "archives", "partial")):
        os.makedirs(path, exist_ok=True)
    os.makedirs(os.path.join(apt_dir, "sources.list.d"), exist_ok=True)
    sources = os.path.join(apt_dir, "sources.list")
    with open(sources, "w") as f:
        f.write(f"deb [arch={ARCHITECTURE} signed-by={KEYRING}] {mirror} {suite} {COMPONENT}\n")
    options = {
        "Dir::State::Lists": lists,
        "Dir::Cache": apt_dir,
        "Dir::Cache::pkgcache": "",
        "Dir::Cache::srcpkgcache": "",
        "Dir::Etc::SourceList": sources,
        "Dir::Etc::SourceParts": os.path.join(apt_dir, "sources.list.d"),
        "Acquire::Languages": "en",
        "Acquire::GzipIndexes": "false",
        "Acquire::Retries": "3",
        # No locks: the lists directory is private to this cache, and the system's apt state
        # is never written, so there is nothing to serialise with.
        "Debug::NoLocking": "true",
    }
    command = ["apt-get", "update", "-q"]
    for key, value in options.items():
        command += ["-o", f"{key}={value}"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as error:
        raise RuntimeError(f"apt-get update timed out after {timeout} s") from error
    # Warnings (an unsandboxed download...) are harmless; a failed fetch is an error, and
    # whatever apt left is checked again by `find_list_files` and the pins.
    if result.returncode != 0 or "Failed to fetch" in result.stderr:
        raise RuntimeError(
            f"apt-get update failed ({result.returncode}): {' '.join(command)}\n"
            f"{result.stderr[-2000:]}"
        )
    return lists


# ----------------------------------------------------------------------------- .deb files


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
