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
import contextlib
import functools
import os
import posixpath
import re
import tarfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

from cpt_jax import files
from cpt_jax.downloads import DEFAULT_PIP_TIMEOUT_S, PinnedArchive, download
from data_pipelines import corpus, python_code

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


# Popular, mostly pure-Python packages (none reserved). Each is its py3-none-any wheel where
# one exists, else the CPython 3.11 manylinux x86_64 wheel (same .py files, plus extensions
# that are never read). Hashes recorded from `pip download` on 2024-10 releases, checked
# against PyPI's simple index.
PINNED = (
    # validation (VALIDATION_PACKAGES)
    PinnedArchive(
        "astropy",
        "6.1.4",
        "astropy-6.1.4-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "50ab8d8097df76e33b56ab429d07240df6f273ccd267949ff99f8df79c7fcc42",
    ),
    PinnedArchive(
        "sphinx",
        "7.4.7",
        "sphinx-7.4.7-py3-none-any.whl",
        "c2419e2135d11f1951cd994d6eb18a1835bd8fdd8429f9ca375dc1f3281bd239",
    ),
    PinnedArchive(
        "docutils",
        "0.21.2",
        "docutils-0.21.2-py3-none-any.whl",
        "dafca5b9e384f0e419294eb4d2ff9fa826435bf15f15b7bd45723e8ad76811b2",
    ),
    PinnedArchive(
        "pygments",
        "2.18.0",
        "pygments-2.18.0-py3-none-any.whl",
        "b8e6aca0523f3ab76fee51799c488e38782ac06eafcf95e7ba832985c8e7b13a",
    ),
    # train
    PinnedArchive(
        "numpy",
        "1.26.4",
        "numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "666dbfb6ec68962c033a450943ded891bed2d54e6755e35e5835d63f4f6931d5",
    ),
    PinnedArchive(
        "scipy",
        "1.13.1",
        "scipy-1.13.1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "a78b4b3345f1b6f68a763c6e25c0c9a23a9fd0f39f5f3d200efe8feda560a5fa",
    ),
    PinnedArchive(
        "sympy",
        "1.13.3",
        "sympy-1.13.3-py3-none-any.whl",
        "54612cf55a62755ee71824ce692986f23c88ffa77207b30c1368eda4a7060f73",
    ),
    PinnedArchive(
        "pandas",
        "2.2.3",
        "pandas-2.2.3-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "c124333816c3a9b03fbeef3a9f230ba9a737e9e5bb4060aa2107a86cc0a497fc",
    ),
    PinnedArchive(
        "matplotlib",
        "3.9.2",
        "matplotlib-3.9.2-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "8912ef7c2362f7193b5819d17dae8629b34a95c58603d781329712ada83f9447",
    ),
    PinnedArchive(
        "statsmodels",
        "0.14.4",
        "statsmodels-0.14.4-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "e332c2d9b806083d1797231280602340c5c913f90d4caa0213a6a54679ce9331",
    ),
    PinnedArchive(
        "django",
        "5.1.2",
        "Django-5.1.2-py3-none-any.whl",
        "f11aa87ad8d5617171e3f77e1d5d16f004b79a2cf5d2e1d2b97a6a1f8e9ba5ed",
    ),
    PinnedArchive(
        "twisted",
        "24.7.0",
        "twisted-24.7.0-py3-none-any.whl",
        "734832ef98108136e222b5230075b1079dad8a3fc5637319615619a7725b0c81",
    ),
    PinnedArchive(
        "sqlalchemy",
        "2.0.35",
        "SQLAlchemy-2.0.35-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "627dee0c280eea91aed87b20a1f849e9ae2fe719d52cbf847c0e0ea34464b3f7",
    ),
    PinnedArchive(
        "aiohttp",
        "3.10.10",
        "aiohttp-3.10.10-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "679abe5d3858b33c2cf74faec299fda60ea9de62916e8b67e625d65bf069a3b7",
    ),
    PinnedArchive(
        "transformers",
        "4.45.2",
        "transformers-4.45.2-py3-none-any.whl",
        "c551b33660cfc815bae1f9f097ecfd1e65be623f13c6ee0dda372bd881460210",
    ),
    PinnedArchive(
        "numba",
        "0.60.0",
        "numba-0.60.0-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
        "4142d7ac0210cc86432b818338a2bc368dc773a2f5cf1e32ff7c5b378bd63ee8",
    ),
    PinnedArchive(
        "ipython",
        "8.28.0",
        "ipython-8.28.0-py3-none-any.whl",
        "530ef1e7bb693724d3cdc37287c80b07ad9b25986c007a53aa1857272dac3f35",
    ),
    PinnedArchive(
        "setuptools",
        "75.1.0",
        "setuptools-75.1.0-py3-none-any.whl",
        "35ab7fd3bcd95e6b7fd704e4a1539513edad446c097797f2985e0e4b960772f2",
    ),
    PinnedArchive(
        "pip",
        "24.2",
        "pip-24.2-py3-none-any.whl",
        "2cd581cf58ab7fcfca4ce8efa6dcacd0de5bf8d0a3eb9ec927e07405f4d9e2a2",
    ),
    PinnedArchive(
        "mypy",
        "1.11.2",
        "mypy-1.11.2-py3-none-any.whl",
        "b499bc07dbdcd3de92b0a8b29fdf592c111276f6a12fe29c30f6c417dd546d12",
    ),
    PinnedArchive(
        "pylint",
        "3.3.1",
        "pylint-3.3.1-py3-none-any.whl",
        "2f846a466dd023513240bc140ad2dd73bfc080a5d85a710afdb728c420a5a2b9",
    ),
    PinnedArchive(
        "astroid",
        "3.3.5",
        "astroid-3.3.5-py3-none-any.whl",
        "a9d1c946ada25098d790e079ba2a1b112157278f3fb7e718ae6a9252f5835dc8",
    ),
    PinnedArchive(
        "pytest",
        "8.3.3",
        "pytest-8.3.3-py3-none-any.whl",
        "a6853c7375b2663155079443d2e45de913a911a11d669df02a50814944db57b2",
    ),
    PinnedArchive(
        "hypothesis",
        "6.115.0",
        "hypothesis-6.115.0-py3-none-any.whl",
        "b4f39185bd8fd7e98bdbced8062c8e844c71384d850725ad0bb6e16257e7a4f1",
    ),
    PinnedArchive(
        "pyparsing",
        "3.1.4",
        "pyparsing-3.1.4-py3-none-any.whl",
        "a6a7ee4235a3f944aa1fa2249307708f893fe5717dc603503c6c7969c070fb7c",
    ),
    PinnedArchive(
        "python-dateutil",
        "2.9.0.post0",
        "python_dateutil-2.9.0.post0-py2.py3-none-any.whl",
        "a8b2bc7bffae282281c8140a97d3aa9c14da0b136dfe83f850eea9a5f7470427",
    ),
    PinnedArchive(
        "rich",
        "13.9.2",
        "rich-13.9.2-py3-none-any.whl",
        "8c82a3d3f8dcfe9e734771313e606b39d8247bb6b826e196f4914b333b743cf1",
    ),
    PinnedArchive(
        "prompt_toolkit",
        "3.0.48",
        "prompt_toolkit-3.0.48-py3-none-any.whl",
        "f49a827f90062e411f1ce1f854f2aedb3c23353244f8108b89283587397ac10e",
    ),
    PinnedArchive(
        "jedi",
        "0.19.1",
        "jedi-0.19.1-py2.py3-none-any.whl",
        "e983c654fe5c02867aef4cdfce5a2fbb4a50adc0af145f70504238f18ef5e7e0",
    ),
    PinnedArchive(
        "parso",
        "0.8.4",
        "parso-0.8.4-py2.py3-none-any.whl",
        "a418670a20291dacd2dddc80c377c5c3791378ee1e8d12bffc35420643d43f18",
    ),
    PinnedArchive(
        "nltk",
        "3.9.1",
        "nltk-3.9.1-py3-none-any.whl",
        "4fa26829c5b00715afe3061398a8989dc643b92ce7dd93fb4585a70930d168a1",
    ),
    PinnedArchive(
        "scrapy",
        "2.11.2",
        "Scrapy-2.11.2-py2.py3-none-any.whl",
        "4be353d6abbb942a9f7e7614ca8b5f3d9037381176ac8d8859c8cac676e74fa0",
    ),
    PinnedArchive(
        "celery",
        "5.4.0",
        "celery-5.4.0-py3-none-any.whl",
        "369631eb580cf8c51a82721ec538684994f8277637edde2dfc0dacd73ed97f64",
    ),
    PinnedArchive(
        "kombu",
        "5.4.2",
        "kombu-5.4.2-py3-none-any.whl",
        "14212f5ccf022fc0a70453bb025a1dcc32782a588c49ea866884047d66e14763",
    ),
    PinnedArchive(
        "paramiko",
        "3.5.0",
        "paramiko-3.5.0-py3-none-any.whl",
        "1fedf06b085359051cd7d0d270cebe19e755a8a921cc2ddbfa647fb0cd7d68f9",
    ),
    PinnedArchive(
        "pydantic",
        "2.9.2",
        "pydantic-2.9.2-py3-none-any.whl",
        "f048cec7b26778210e28a0459867920654d48e5e62db0958433636cde4254f12",
    ),
    PinnedArchive(
        "httpx",
        "0.27.2",
        "httpx-0.27.2-py3-none-any.whl",
        "7bb2708e112d8fdd7829cd4243970f0c223274051cb35ee80c03301ee29a3df0",
    ),
    PinnedArchive(
        "xarray",
        "2024.9.0",
        "xarray-2024.9.0-py3-none-any.whl",
        "4fd534abdf12d5fa75dd566c56483d5081f77864462cf3d6ad53e13f9db48222",
    ),
    PinnedArchive(
        "dask",
        "2024.9.1",
        "dask-2024.9.1-py3-none-any.whl",
        "3757bb6c976f0436fef6bd6ad32f8983ee5ce7d8a738a1f643e208cd390ec794",
    ),
    PinnedArchive(
        "bokeh",
        "3.6.0",
        "bokeh-3.6.0-py3-none-any.whl",
        "699e0df76cdfe54b5f574738647bd0ce230fa44fa0fcda5923e1f0f550f83d74",
    ),
)

# ----------------------------------------------------------------------------- download

# ----------------------------------------------------------------------------- reading

Reader = Callable[[], bytes]


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _tree_files(root: str) -> list[tuple[str, Reader]]:
    """A directory's `.py` files as `name/relative/path` (the directory's own name first)."""
    base = os.path.basename(os.path.normpath(root))
    found = []
    for directory, subdirs, names in os.walk(root):
        subdirs.sort()
        for name in sorted(names):
            if name.endswith(".py"):
                full = os.path.join(directory, name)
                relative = os.path.relpath(full, root).replace(os.sep, "/")
                found.append((f"{base}/{relative}", functools.partial(_read_file, full)))
    return sorted(found, key=lambda entry: entry[0])


def _tar_files(tf: tarfile.TarFile) -> list[tuple[str, Reader]]:
    # Read in archive order, once: seeking back in a compressed tar re-decompresses it.
    contents = {}
    for member in tf:
        if member.isfile() and member.name.endswith(".py"):
            contents[member.name] = tf.extractfile(member).read()
    return [(name, functools.partial(contents.get, name)) for name in sorted(contents)]


@contextlib.contextmanager
def open_source(path: str) -> Iterator[list[tuple[str, Reader]]]:
    """(member path, reader of its bytes) of every `.py` file of a directory, wheel, `.zip`
    or tar archive, sorted by path, valid inside the `with`; nothing is installed or
    unpacked to disk.

    A directory's members are named below the directory's own name (`tree/pkg/mod.py`),
    like the single root folder of an sdist.
    """
    if os.path.isdir(path):
        yield _tree_files(path)
    elif path.endswith((".whl", ".zip")):
        with zipfile.ZipFile(path) as zf:
            names = sorted({n for n in zf.namelist() if n.endswith(".py")})
            yield [(name, functools.partial(zf.read, name)) for name in names]
    elif path.endswith(_TAR_SUFFIXES):
        with tarfile.open(path, "r:*") as tf:
            yield _tar_files(tf)
    else:
        raise ValueError(f"{path}: not a directory or a {'/'.join(_ARCHIVE_SUFFIXES)} archive")


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
    with open_source(path) as entries:
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


def split_of_package(name: str) -> str:
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
        self.sources = sorted(chosen, key=lambda s: split_of_package(s.name) != "validation")
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
        return split_of_package(record["package"].split("==")[0])

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
