"""(docstring, code) pairs from the Python code of pinned PyPI packages and of local sources.

The default corpus reads ~40 popular packages, each pinned to one exact archive (version, file
name and sha256). Each is fetched with `pip download --no-deps` into a cache directory, its
sha256 verified, and read as a zip (or tar) without ever being installed or unpacked to disk;
a file already in the cache with the pinned hash is reused, so a second build is offline.
`--source PATH` adds (or, alone, replaces them with) any local source tree, wheel, `.zip` or
`.tar.gz`.

Extraction is `python_code`'s (`extract_pairs`: CodeSearchNet-style filters), and so is the
file rule (`python_code.is_excluded_path`: no tests, no vendored code), widened by
`VENDORED_DIRS`, vendoring directory names common on PyPI but absent from the standard library.
Records: `query`, `document`, `code_no_comments`, `path` (inside the archive or tree),
`module` (dotted, package-qualified: `numpy.linalg.linalg`), `name`, `lineno`, `package`
(`numpy==1.26.4`; a local source without a version in its name is just its name).

Held-out code (docs/design.md, held-out data): the reserved packages `RESERVED_PACKAGES` are
never read. Asking for one is an error (names compared PEP 503-normalised: `Scikit_Learn` is
`scikit-learn`), and any file whose import path goes through a reserved import package
(`RESERVED_IMPORTS`: a vendored `pip/_vendor/requests/...`, a `click/` in a source tree) is
skipped and counted as `reserved_package_file`, whatever directory it sits in.

Splits: `VALIDATION_PACKAGES` (astropy, sphinx, docutils, pygments: the code-search
validation sets) are `validation`, every other package `train`; there is no test split (the
held-out test code is the reserved packages, never built here). Validation units come first,
so that global de-duplication (first occurrence wins) drops a function shared with a training
package from train, never from validation.

Skip reasons (manifest `skipped`): `reserved_package_file`, `excluded_file` (tests, vendored),
`non_utf8_file`, `unparsable_file`, the function-level reasons of `python_code`, and
`duplicate`.

CLI: `python -m data_pipelines.build pypi_code [--packages numpy,sympy] [--source PATH ...]
[--cache_dir DIR]` (writes `data/pypi_code/`; downloads go to `data/pypi_code/downloads/`).
"""

from __future__ import annotations

import argparse
import json
import os
import posixpath
import re
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from cpt_jax import files
from cpt_jax.downloads import DEFAULT_PIP_TIMEOUT_S, PinnedArchive, download
from data_pipelines import archives, corpus, python_code

# Bump when this module's output changes (python_code.EXTRACTION_VERSION covers extraction).
BUILDER_VERSION = 1
DEFAULT_OUT_DIR = os.path.join("data", "pypi_code")

# docs/design.md (held-out data): held out for evaluation, never training or tuning data.
RESERVED_PACKAGES = (
    "scikit-learn",
    "networkx",
    "requests",
    "flask",
    "werkzeug",
    "jinja2",
    "click",
    "tornado",
    "attrs",
    "babel",
)
# The import packages those distributions install: how a vendored copy is recognised.
RESERVED_IMPORTS = frozenset(
    {"sklearn", "networkx", "requests", "flask", "werkzeug", "jinja2", "click", "tornado"}
    | {"attr", "attrs", "babel"}
)
# docs/design.md (held-out data): the code-search validation sets.
VALIDATION_PACKAGES = frozenset({"astropy", "sphinx", "docutils", "pygments"})
# Vendoring directories seen on PyPI beyond python_code.EXCLUDED_DIRS (`_vendor`, `_bundled`).
# `_distutils` is setuptools' copy of the standard library's distutils (a held-out stdlib
# module in `stdlib_code`): vendored code, and evaluation data elsewhere.
VENDORED_DIRS = frozenset(
    {
        "vendor",
        "vendored",
        "_vendored",
        "extern",
        "_extern",
        "externals",
        "third_party",
        "_distutils",
    }
)
_TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar")
_ARCHIVE_SUFFIXES = (".whl", ".zip", *_TAR_SUFFIXES)


class ReservedPackageError(ValueError):
    """A reserved (held-out) package was asked for."""


def normalize_name(name: str) -> str:
    """A distribution name PEP 503-normalised: `Scikit_Learn` -> `scikit-learn`."""
    return re.sub(r"[-_.]+", "-", name).lower()


_RESERVED_NORMALIZED = frozenset(normalize_name(n) for n in RESERVED_PACKAGES)


def is_reserved(name: str) -> bool:
    """Whether a distribution or import name is one of the held-out packages."""
    normalized = normalize_name(name)
    return normalized in _RESERVED_NORMALIZED or normalized.replace("-", "_") in RESERVED_IMPORTS


def check_not_reserved(name: str, what: str) -> None:
    """Raises `ReservedPackageError` if `name` is a held-out package; `what` names the input."""
    if is_reserved(name):
        raise ReservedPackageError(
            f"{what}: {name!r} is reserved for held-out evaluation (docs/design.md, held-out data: "
            f"{', '.join(RESERVED_PACKAGES)}) and is never used to build a corpus"
        )


# The pinned archives of the default corpus: data_pipelines/pins/pypi_code.json (its "about"
# says how they were chosen and recorded).
PINS_FILE = os.path.join(os.path.dirname(__file__), "pins", "pypi_code.json")


def _read_pins(path: str) -> tuple[PinnedArchive, ...]:
    with open(path, encoding="utf-8") as f:
        return tuple(PinnedArchive(**pin) for pin in json.load(f)["wheels"])


PINNED = _read_pins(PINS_FILE)

# ----------------------------------------------------------------------------- reading


def import_paths(members: Sequence[str], *, wheel: bool) -> dict[str, str]:
    """Each member path mapped to its path from the import root (`pkg/mod.py`).

    A wheel's root is the import root: only a `name-version.data/purelib/`-style prefix is
    removed. Elsewhere (sdists, trees) a single root folder shared by all members that is
    not itself a package (an sdist's `name-version/`) is removed, then a leading `src/` or
    `lib/` that is not a package.
    """
    paths = [m.lstrip("/").removeprefix("./") for m in members]
    if wheel:
        paths = [re.sub(r"^[^/]+\.data/[^/]+/", "", p) for p in paths]
        return dict(zip(members, paths, strict=True))
    roots = {p.split("/", 1)[0] for p in paths}
    if len(roots) == 1 and all("/" in p for p in paths):
        (root,) = roots
        if f"{root}/__init__.py" not in paths:
            paths = [p.split("/", 1)[1] for p in paths]
    present = set(paths)
    for layout in ("src", "lib"):
        if f"{layout}/__init__.py" not in present:
            paths = [p.removeprefix(f"{layout}/") for p in paths]
    return dict(zip(members, paths, strict=True))


def module_name(import_path: str) -> str:
    """The dotted module of an import path: `pkg/sub/__init__.py` -> `pkg.sub`."""
    parts = import_path[: -len(".py")].split("/")
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def is_reserved_path(import_path: str) -> bool:
    """Whether a file belongs to a reserved import package: any of its directories is one
    (`pip/_vendor/requests/api.py`), or it is a top-level module of that name (`click.py`)."""
    *directories, name = import_path.split("/")
    if not directories:
        return posixpath.splitext(name)[0] in RESERVED_IMPORTS
    return any(d in RESERVED_IMPORTS for d in directories)


def is_excluded(import_path: str) -> bool:
    """`python_code.is_excluded_path` (tests, vendored, non-`.py`) or a `VENDORED_DIRS` file."""
    directories = import_path.split("/")[:-1]
    return python_code.is_excluded_path(import_path) or any(d in VENDORED_DIRS for d in directories)


def extract_source(path: str, package: str, skipped: Counter) -> Iterator[dict]:
    """The records of one directory or archive; `package` fills the records' `package`.

    Files are skipped (counted in `skipped`) when reserved (`reserved_package_file`),
    excluded (`excluded_file`), not UTF-8 or unparsable; functions by `python_code`'s rules.
    """
    with archives.open_files(path, suffixes=(".py",), root_name=True) as entries:
        imports = import_paths([m for m, _ in entries], wheel=path.endswith(".whl"))
        for member, read in entries:
            import_path = imports[member]
            if is_reserved_path(import_path):
                skipped["reserved_package_file"] += 1
                continue
            if is_excluded(import_path):
                skipped["excluded_file"] += 1
                continue
            try:
                data = read()
            except (OSError, zipfile.BadZipFile, zlib.error) as e:
                raise ValueError(f"{path}: cannot read {member}: {e}") from e
            module = module_name(import_path)
            for record in python_code.extract_file_pairs(
                data, path=member, module=module, skipped=skipped
            ):
                record["package"] = package
                yield record


# ----------------------------------------------------------------------------- builder


class Source(NamedTuple):
    """One unit's input: a pinned PyPI archive (downloaded when extracted) or a local path."""

    name: str
    version: str  # "" when a local source's name has none
    pin: PinnedArchive | None = None
    path: str | None = None

    @property
    def package(self) -> str:
        """`name==version`, or the bare name without a version."""
        return f"{self.name}=={self.version}" if self.version else self.name

    @property
    def unit_name(self) -> str:
        """A filesystem-safe unit name: `numpy-1.26.4`."""
        name = f"{normalize_name(self.name)}-{self.version}" if self.version else self.name
        return corpus.safe_unit_name(name)


def split_for_package(name: str) -> str:
    """`validation` for the validation packages, else `train`."""
    return "validation" if normalize_name(name) in VALIDATION_PACKAGES else "train"


def pinned_source(name: str) -> Source:
    """The pinned archive of a package name (any spelling); errors for reserved/unpinned."""
    check_not_reserved(name, "--packages")
    pins = {normalize_name(p.name): p for p in PINNED}
    pin = pins.get(normalize_name(name))
    if pin is None:
        raise ValueError(
            f"--packages: {name!r} is not pinned; pinned are {sorted(pins)} (add a "
            "PinnedArchive with version, file name and sha256 to PINNED)"
        )
    return Source(pin.name, pin.version, pin=pin)


def local_source(path: str) -> Source:
    """A local directory or archive; its name (and version) come from the file name:
    `pkg-1.0-py3-none-any.whl` -> `pkg` 1.0, `pkg-1.0.tar.gz` -> `pkg` 1.0, `dir/` -> `dir`."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"--source {path}: no such file or directory")
    base = os.path.basename(os.path.normpath(path))
    if os.path.isdir(path):
        name, version = base, ""
    elif base.endswith(".whl"):
        name, version = base.split("-")[:2]
    elif base.endswith((".zip", *_TAR_SUFFIXES)):
        stem = re.sub(r"(\.zip|\.tar\.gz|\.tgz|\.tar\.bz2|\.tar\.xz|\.tar)$", "", base)
        match = re.fullmatch(r"(.+?)-(\d[^-]*)", stem)
        name, version = (match[1], match[2]) if match else (stem, "")
    else:
        raise ValueError(
            f"--source {path}: not a directory or a {'/'.join(_ARCHIVE_SUFFIXES)} archive"
        )
    check_not_reserved(name, f"--source {path}")
    return Source(name, version, path=os.path.abspath(path))


class PyPICodeBuilder(corpus.Builder):
    """Pinned PyPI packages and local sources, one unit each, validation units first.

    Args:
      packages: names from `PINNED` (any spelling), or None for all of them.
      sources: local directories or archives.
      cache_dir: where pinned archives are downloaded (and reused from).
      pip_timeout: seconds one `pip download` may take.
      log: progress lines (downloads).
    """

    name = "pypi_code"

    def __init__(
        self,
        packages: Sequence[str] | None = None,
        sources: Sequence[str] = (),
        *,
        cache_dir: str = os.path.join(DEFAULT_OUT_DIR, "downloads"),
        pip_timeout: float = DEFAULT_PIP_TIMEOUT_S,
        log=print,
    ):
        names = [p.name for p in PINNED] if packages is None else packages
        chosen = [pinned_source(n) for n in names] + [local_source(p) for p in sources]
        # Validation first: de-duplication keeps the first occurrence (see module docstring).
        self.sources = sorted(chosen, key=lambda s: split_for_package(s.name) != "validation")
        self.cache_dir = cache_dir
        self.pip_timeout = pip_timeout
        self.log = log
        self._description: dict | None = None

    def units(self) -> list[corpus.Unit]:
        return [corpus.Unit(s.unit_name, s) for s in self.sources]

    def extract(self, unit: corpus.Unit, skipped: Counter) -> Iterator[dict]:
        source: Source = unit.payload
        path = source.path or download(
            source.pin, self.cache_dir, timeout=self.pip_timeout, log=self.log
        )
        yield from extract_source(path, source.package, skipped)

    def split(self, record: dict) -> str:
        return split_for_package(record["package"].split("==")[0])

    def description(self) -> dict:
        if self._description is None:  # hashing local sources is not free: once
            local = []
            for s in self.sources:
                if s.path is not None:
                    digest = (
                        files.tree_sha256(s.path, (".py",))
                        if os.path.isdir(s.path)
                        else files.sha256_of(s.path)
                    )
                    local.append({"path": s.path, "package": s.package, "sha256": digest})
            self._description = {
                "kind": "pypi_python_code",
                "builder_version": BUILDER_VERSION,
                "extraction": python_code.EXTRACTION_VERSION,
                "packages": [s.pin.describe() for s in self.sources if s.pin is not None],
                "sources": local,
                "reserved_never_used": list(RESERVED_PACKAGES),
                "validation_packages": sorted(VALIDATION_PACKAGES),
                "split_rule": "validation packages -> validation, others -> train; no test",
                "excluded_dirs": sorted(python_code.EXCLUDED_DIRS | VENDORED_DIRS),
            }
        return self._description


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The pypi_code options; the defaults build the full pinned corpus."""
    parser.add_argument(
        "--packages",
        default=None,
        help="comma-separated pinned packages to read (default: all pinned, unless --source "
        "is given; 'all' for all, 'none' for none)",
    )
    parser.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="PATH",
        help="a local source tree, wheel, .zip or .tar.gz to read too (repeatable)",
    )
    parser.add_argument(
        "--cache_dir", default=None, help="download cache (default: <out_dir>/downloads)"
    )
    parser.add_argument(
        "--pip_timeout", type=float, default=DEFAULT_PIP_TIMEOUT_S, help="seconds per download"
    )


def builder_from_args(args: argparse.Namespace) -> PyPICodeBuilder:
    """The builder that `add_arguments`' options describe."""
    if args.packages in (None, "all"):
        packages = None if args.packages == "all" or not args.source else []
    elif args.packages == "none":
        packages = []
    else:
        packages = [p.strip() for p in args.packages.split(",") if p.strip()]
    out_dir = getattr(args, "out_dir", None) or DEFAULT_OUT_DIR
    return PyPICodeBuilder(
        packages,
        args.source,
        cache_dir=args.cache_dir or os.path.join(out_dir, "downloads"),
        pip_timeout=args.pip_timeout,
    )
