"""The files of a source tree or an archive, read in place: directories, wheels and zips, tars
(sdists), and Debian `.deb` packages (with zips or tars inside them). Nothing is installed or
unpacked to disk.

    with open_files("numpy-1.26.4-...whl", suffixes=(".py",)) as files:
        names = [name for name, _ in files]        # decide what to read first...
        data = dict(files)["numpy/linalg/linalg.py"]()   # ...then read it
    for name, data in iter_files("golang-1.19-src.deb", prefixes=("usr/share/go-1.19/src/",)):
        ...

Paths are relative and `/`-separated, without a leading `./`, in sorted order (a `.deb`'s in
its archive order). A directory's paths can be named below the directory's own name
(`root_name=True`: `tree/pkg/mod.py`), like the single root folder of an sdist.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import tarfile
import zipfile
from collections.abc import Callable, Iterator, Sequence

from data_pipelines import debian_packages

Reader = Callable[[], bytes]


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


@contextlib.contextmanager
def open_files(
    path: str,
    *,
    prefixes: Sequence[str] = ("",),
    suffixes: Sequence[str] = (),
    root_name: bool = False,
) -> Iterator[list[tuple[str, Reader]]]:
    """`(relative path, reader of its bytes)` of the regular files of `path` whose relative
    path starts with one of `prefixes` and ends with one of `suffixes` (any, when empty);
    the readers are valid inside the `with`. Members of a directory or zip are read only
    when their reader is called; a tar's or `.deb`'s matching members are read in one pass
    (seeking back in a compressed stream would decompress it again).

    In a `.deb`, a prefix `ARCHIVE!/BELOW` reads the members below `BELOW` of the zip or tar
    `ARCHIVE` that the package ships (`usr/lib/jvm/openjdk-17/lib/src.zip!/java.base/`).

    Raises:
      ValueError: `path` is none of these.
    """
    prefixes = tuple(prefixes) or ("",)
    suffixes = tuple(suffixes) or ("",)

    def wanted(name: str) -> bool:
        return name.startswith(prefixes) and name.endswith(suffixes)

    if os.path.isdir(path):
        base = os.path.basename(os.path.normpath(path)) + "/" if root_name else ""
        yield sorted(
            (base + relative, functools.partial(_read_file, full))
            for relative, full in _tree(path)
            if wanted(relative)
        )
    elif path.endswith(".deb"):
        yield [(n, functools.partial(bytes, d)) for n, d in _deb_files(path, prefixes, suffixes)]
    elif zipfile.is_zipfile(path) or tarfile.is_tarfile(path):
        with open(path, "rb") as f, _archive_files(f, wanted) as found:
            yield found
    else:
        raise ValueError(f"{path}: not a directory, .deb, zip or tar archive")


def iter_files(
    path: str, prefixes: Sequence[str] = ("",), **options
) -> Iterator[tuple[str, bytes]]:
    """`(relative path, contents)` of `open_files(path, prefixes=prefixes, **options)`."""
    with open_files(path, prefixes=prefixes, **options) as found:
        for name, read in found:
            yield name, read()


def _tree(root: str) -> Iterator[tuple[str, str]]:
    """`(relative path, full path)` of a directory's regular files."""
    for directory, _, names in os.walk(root):
        for name in names:
            full = os.path.join(directory, name)
            if os.path.isfile(full):
                yield os.path.relpath(full, root).replace(os.sep, "/"), full


@contextlib.contextmanager
def _archive_files(file, wanted: Callable[[str], bool], shown_prefix: str = ""):
    """`open_files`' list for a zip or tar archive, an open binary file."""
    if zipfile.is_zipfile(file):
        with zipfile.ZipFile(file) as archive:
            names = sorted({i.filename for i in archive.infolist() if not i.is_dir()})
            yield [
                (shown_prefix + name, functools.partial(archive.read, name))
                for name in names
                if wanted(name)
            ]
        return
    file.seek(0)
    contents = {}
    with tarfile.open(fileobj=file, mode="r:*") as archive:
        for member in archive:
            name = member.name.removeprefix("./")
            if member.isfile() and wanted(name):
                contents[name] = archive.extractfile(member).read()
    yield [(shown_prefix + n, functools.partial(bytes, contents[n])) for n in sorted(contents)]


def _deb_files(path: str, prefixes: tuple[str, ...], suffixes: tuple[str, ...]):
    """`(path, bytes)` of a `.deb`'s matching files, and of the archives inside it that an
    `ARCHIVE!/BELOW` prefix opens, in archive order."""
    inner: dict[str, list[str]] = {}
    for prefix in prefixes:
        if "!/" in prefix:
            archive, below = prefix.split("!/", 1)
            inner.setdefault(archive, []).append(below)
    outer = tuple(p for p in prefixes if "!/" not in p)
    for name, data in debian_packages.iter_deb_files(path):
        if name in inner:
            below = tuple(inner[name])

            def wanted(member: str, below=below) -> bool:
                return member.startswith(below) and member.endswith(suffixes)

            with _archive_files(io.BytesIO(data), wanted, f"{name}!/") as found:
                yield from ((member, read()) for member, read in found)
        elif outer and name.startswith(outer) and name.endswith(suffixes):
            yield name, data
