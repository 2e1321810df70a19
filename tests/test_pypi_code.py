"""The PyPI code corpus: archives and trees read without installing, reserved packages never
used, validation first, pinned downloads verified (no network: pip is replaced by a stub)."""

import io
import json
import re
import tarfile
import zipfile
from collections import Counter

import pytest

from cpt_jax import downloads
from cpt_jax.files import sha256_of
from data_pipelines import build, corpus, pypi_code

QUIET = {"log": lambda *_: None}

GEOMETRY = '''\
"""Shapes."""


def area(width, height):
    """Return the area of a rectangle.

    More words that are not the query.
    """
    # multiply the sides
    result = width * height
    return result


def tiny():
    """Too short a body here."""
    return 1


class Shape:
    def scale(self, factor):
        """Scale the shape by a factor."""
        self.width *= factor
        self.height *= factor
        return self
'''
AREA_CODE = (
    "def area(width, height):\n"
    "    # multiply the sides\n"
    "    result = width * height\n"
    "    return result\n"
)
SCALE_CODE = (
    "def scale(self, factor):\n"
    "    self.width *= factor\n"
    "    self.height *= factor\n"
    "    return self\n"
)
# A function that only a reserved package's files contain: it must never come out.
RESERVED_FUNCTION = '''\
def get(url, params=None):
    """Send a GET request to the server."""
    params = params or {}
    response = (url, params)
    return response
'''
SERVE = '''\
def serve(port):
    """Start the server on a port."""
    address = ("", port)
    print(address)
    return address
'''


def line_of(source: str, text: str) -> int:
    return source.splitlines().index(text) + 1


def write_zip(path, files: dict[str, bytes | str]):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return str(path)


def write_tar(path, files: dict[str, bytes | str]):
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            data = data.encode() if isinstance(data, str) else data
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return str(path)


def write_tree(root, files: dict[str, bytes | str]):
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(root)


def demo_wheel(tmp_path, name="demo-1.0-py3-none-any.whl"):
    """A wheel with one good module and one of each kind of file that must be skipped."""
    return write_zip(
        tmp_path / name,
        {
            "demo/__init__.py": "",
            "demo/geometry.py": GEOMETRY,
            "demo/tests/test_geometry.py": SERVE,  # tests: excluded
            "demo/helpers/test_io.py": SERVE,  # test_ file: excluded
            "demo/_vendor/six.py": SERVE,  # python_code's vendored dir: excluded
            "demo/vendor/thing.py": SERVE,  # PyPI's vendored dir: excluded
            "demo/_vendor/requests/api.py": RESERVED_FUNCTION,  # reserved, even vendored
            "demo/latin.py": b"def f():\n    '''Caf\xe9 au lait is served.'''\n    return 1\n",
            "demo/broken.py": "def broken(:\n    pass\n",
            "demo-1.0.dist-info/METADATA": "Name: demo\n",
        },
    )


def test_a_wheel_gives_exact_records_and_counts_what_it_skips(tmp_path):
    skipped = Counter()
    records = list(pypi_code.extract_source(demo_wheel(tmp_path), "demo==1.0", skipped))
    common = {"path": "demo/geometry.py", "module": "demo.geometry", "package": "demo==1.0"}
    assert records == [
        {
            "query": "Return the area of a rectangle.",
            "document": AREA_CODE,
            "code_no_comments": "def area(width, height):\n"
            "    result = width * height\n"
            "    return result",
            "name": "area",
            "lineno": line_of(GEOMETRY, "def area(width, height):"),
            **common,
        },
        {
            "query": "Scale the shape by a factor.",
            "document": SCALE_CODE,
            "code_no_comments": SCALE_CODE.rstrip("\n"),
            "name": "Shape.scale",
            "lineno": line_of(GEOMETRY, "    def scale(self, factor):"),
            **common,
        },
    ]
    assert skipped == {
        "excluded_file": 4,
        "reserved_package_file": 1,
        "non_utf8_file": 1,
        "unparsable_file": 1,
        "short_body": 1,
    }


def test_sdists_zips_and_trees_are_named_from_their_import_root(tmp_path):
    sdist = write_tar(
        tmp_path / "demo-2.0.tar.gz",
        {
            "demo-2.0/setup.py": "import setuptools\n",
            "demo-2.0/src/demo/__init__.py": "",
            "demo-2.0/src/demo/geometry.py": GEOMETRY,
            "demo-2.0/tests/test_demo.py": SERVE,
        },
    )
    zipped = write_zip(
        tmp_path / "other-3.0.zip",
        {"other-3.0/lib/other/__init__.py": "", "other-3.0/lib/other/geo.py": GEOMETRY},
    )
    # A tree that is not a package (its root folder is dropped) and one that is (kept).
    tree = write_tree(tmp_path / "checkout", {"pkgx/__init__.py": "", "pkgx/geo.py": GEOMETRY})
    package = write_tree(tmp_path / "mypkg", {"__init__.py": "", "sub/geo.py": GEOMETRY})
    expected = {
        sdist: ("demo-2.0/src/demo/geometry.py", "demo.geometry", 1),
        zipped: ("other-3.0/lib/other/geo.py", "other.geo", 0),
        tree: ("checkout/pkgx/geo.py", "pkgx.geo", 0),
        package: ("mypkg/sub/geo.py", "mypkg.sub.geo", 0),
    }
    for path, (member, module, excluded) in expected.items():
        skipped = Counter()
        records = list(pypi_code.extract_source(path, "p", skipped))
        assert [(r["path"], r["module"], r["name"]) for r in records] == [
            (member, module, "area"),
            (member, module, "Shape.scale"),
        ], path
        assert skipped["excluded_file"] == excluded, path


def test_import_paths_and_reserved_paths():
    assert pypi_code.import_paths(["demo-1.0.data/purelib/demo/x.py", "demo/y.py"], wheel=True) == {
        "demo-1.0.data/purelib/demo/x.py": "demo/x.py",
        "demo/y.py": "demo/y.py",
    }
    # A wheel's single top folder is its import root, even without __init__ (namespace).
    assert pypi_code.import_paths(["ns/mod.py"], wheel=True) == {"ns/mod.py": "ns/mod.py"}
    assert pypi_code.module_name("pkg/sub/__init__.py") == "pkg.sub"
    reserved = [
        "pip/_vendor/requests/api.py",
        "click/core.py",
        "click.py",
        "attr/_make.py",
        "x/sklearn/base.py",
    ]
    kept = ["django/template/backends/jinja2.py", "jinja2glue.py", "sphinx/util/click_ext.py"]
    assert [pypi_code.is_reserved_path(p) for p in reserved] == [True] * len(reserved)
    assert [pypi_code.is_reserved_path(p) for p in kept] == [False] * len(kept)


def test_reserved_packages_are_refused_in_any_spelling(tmp_path):
    for name in ["Scikit_Learn", "scikit.learn", "sklearn", "Jinja2", "ATTRS", "attr", "Babel"]:
        with pytest.raises(pypi_code.ReservedPackageError, match="reserved for held-out"):
            pypi_code.PyPICodeBuilder([name], **QUIET)
    for base in ["requests-2.32.3.tar.gz", "Flask-3.0.0-py3-none-any.whl", "click"]:
        path = tmp_path / base
        if "." in base:
            path.write_bytes(b"")
        else:
            path.mkdir()
        with pytest.raises(pypi_code.ReservedPackageError, match=re.escape(str(path))):
            pypi_code.PyPICodeBuilder([], [str(path)], **QUIET)
    with pytest.raises(ValueError, match="'leftpad' is not pinned"):
        pypi_code.PyPICodeBuilder(["leftpad"], **QUIET)
    with pytest.raises(FileNotFoundError, match="no such file"):
        pypi_code.PyPICodeBuilder([], [str(tmp_path / "missing.whl")], **QUIET)


def test_the_pinned_list():
    pins = pypi_code.PINNED
    names = [pypi_code.normalize_name(p.name) for p in pins]
    assert 35 <= len(pins) <= 45
    assert len(set(names)) == len(names)
    assert not [n for n in names if pypi_code.is_reserved(n)]
    assert set(names) >= pypi_code.VALIDATION_PACKAGES
    assert {"numpy", "scipy", "sympy", "django", "twisted", "transformers"} <= set(names)
    for pin in pins:
        assert re.fullmatch(r"[0-9a-f]{64}", pin.sha256), pin
        assert re.fullmatch(r"\d+(\.\d+)*(\.post\d+)?", pin.version), pin
        # The file is this release's (wheel names use `_` for `-`, any case).
        prefix = f"{pin.name.replace('-', '_')}-{pin.version}-".lower()
        assert pin.filename.lower().startswith(prefix), pin
        # py3-none-any where it exists, else CPython 3.11 on manylinux x86_64.
        tags = r"-(py3|py2\.py3)-none-any\.whl|-cp311-cp311-manylinux[\w.]*_x86_64\.whl"
        assert re.search(f"({tags})$", pin.filename), pin
    assert not pypi_code.RESERVED_IMPORTS & {n.replace("-", "_") for n in names}


def test_validation_units_come_first(tmp_path):
    units = pypi_code.PyPICodeBuilder(**QUIET).units()
    assert len(units) == len(pypi_code.PINNED)
    assert {u.name.split("-")[0] for u in units[:4]} == set(pypi_code.VALIDATION_PACKAGES)
    assert units[4].name == "numpy-1.26.4"
    train = write_tree(tmp_path / "zzz", {"z.py": SERVE})
    valid = write_tree(tmp_path / "Sphinx", {"s.py": SERVE})
    builder = pypi_code.PyPICodeBuilder(["numpy", "pygments"], [train, valid], **QUIET)
    assert [u.name for u in builder.units()] == ["pygments-2.18.0", "Sphinx", "numpy-1.26.4", "zzz"]
    assert [builder.split({"package": u.payload.package}) for u in builder.units()] == [
        "validation",
        "validation",
        "train",
        "train",
    ]


def test_builds_a_corpus_from_a_pinned_wheel_and_local_sources(tmp_path, monkeypatch, fake_pip):
    # A pinned package whose verified archive is already cached: built without pip.
    cache = tmp_path / "out" / "downloads"
    cache.mkdir(parents=True)
    wheel = demo_wheel(cache)
    pin = downloads.PinnedArchive("Demo", "1.0", "demo-1.0-py3-none-any.whl", sha256_of(wheel))
    monkeypatch.setattr(pypi_code, "PINNED", (*pypi_code.PINNED, pin))
    monkeypatch.setenv("FAKE_PIP_MODE", "fail")
    # A validation package sharing `area` with the training wheel: validation keeps it.
    docutils = write_tree(tmp_path / "docutils", {"__init__.py": "", "geo.py": GEOMETRY})
    extra = write_tar(tmp_path / "serve-0.1.tar.gz", {"serve-0.1/serve/net.py": SERVE})
    argv = ["pypi_code", "--out_dir", str(tmp_path / "out"), "--packages", "demo"]
    assert build.main([*argv, "--source", extra, "--source", docutils]) == 0
    assert fake_pip() == []

    manifest = corpus.read_manifest(str(tmp_path / "out"))
    assert manifest["counts"] == {"validation": 2, "train": 1}
    assert [u["name"] for u in manifest["units"]] == ["docutils", "demo-1.0", "serve-0.1"]
    assert manifest["skipped"] == {
        "duplicate": 2,  # the wheel's area and Shape.scale
        "excluded_file": 4,
        "reserved_package_file": 1,
        "non_utf8_file": 1,
        "unparsable_file": 1,
        "short_body": 2,
    }
    assert manifest["source"]["packages"] == [pin.describe()]
    assert [s["package"] for s in manifest["source"]["sources"]] == ["docutils", "serve==0.1"]
    validation = corpus.read_split(str(tmp_path / "out"), "validation")
    assert [(r["module"], r["name"], r["package"]) for r in validation] == [
        ("docutils.geo", "area", "docutils"),
        ("docutils.geo", "Shape.scale", "docutils"),
    ]
    assert validation[0]["document"] == AREA_CODE
    (train,) = corpus.read_split(str(tmp_path / "out"), "train")
    assert (train["query"], train["module"], train["package"]) == (
        "Start the server on a port.",
        "serve.net",
        "serve==0.1",
    )
    texts = json.dumps(validation + [train])
    assert "Send a GET request" not in texts  # the vendored reserved package never leaks
