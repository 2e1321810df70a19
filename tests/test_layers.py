"""Imports go one way: base -> library -> applications (docs/design.md, Layers).

Every module of `cpt_jax` and `data_pipelines` is read with `ast`; each import of a project
module, wherever it sits in the file, must be of the importer's layer or a lower one, and
the `cpt_jax` library never imports `data_pipelines`. Project imports sit at the top of
files, but for the `LAZY` modules. A module missing from `LAYERS` is an error too: a new
module is given its layer here, on purpose.
"""

import ast
import os

import pytest
from launch import REPO

PACKAGES = ("cpt_jax", "data_pipelines")
LAYERS = {
    "base": ["cpt_jax.files", "cpt_jax.tokenization", "cpt_jax.downloads"],
    "library": [
        "cpt_jax",  # the package's __init__
        "cpt_jax.models",
        "cpt_jax.losses",
        "cpt_jax.quantization",
        "cpt_jax.partitioning",
        "cpt_jax.multihost",
        "cpt_jax.trainer",
        "cpt_jax.grad_cache",
        "cpt_jax.metrics_log",
        "cpt_jax.step_guards",
        "cpt_jax.watchdog",
        "cpt_jax.checkpoints",
        "cpt_jax.resume_check",
        "cpt_jax.embed",
        "cpt_jax.serving",
        "cpt_jax.evaluation",
        "cpt_jax.pretrained",
        "cpt_jax.weight_interpolation",
        "cpt_jax.mteb_adapter",
        "data_pipelines",  # the package's __init__
        "data_pipelines.corpus",
        "data_pipelines.python_code",
        "data_pipelines.pypi_code",
        "data_pipelines.tree_sitter_code",
        "data_pipelines.source_functions",
        "data_pipelines.debian_packages",
        "data_pipelines.debian_text",
        "data_pipelines.python_docs",
        "data_pipelines.wordnet",
        "data_pipelines.text_neighbours",
        "data_pipelines.text",
        "data_pipelines.splits",
        "data_pipelines.archives",
        "data_pipelines.code_grammars",
        "data_pipelines.codesearchnet",
        "data_pipelines.supervised",
        "data_pipelines.derived",
        "data_pipelines.curated_pairs",
        "data_pipelines.tasks",
        "data_pipelines.feature_converters",
        "data_pipelines.pipeline",
        "data_pipelines.vocabulary",
    ],
    "applications": [
        "cpt_jax.train",
        "cpt_jax.gin_cli",
        "cpt_jax.pair_data",
        "cpt_jax.evaluate",
        "cpt_jax.quickstart",
        "cpt_jax.search",
        "cpt_jax.serve",
        "cpt_jax.export",
        "data_pipelines.build",
        "data_pipelines.mined_negatives",
    ],
}
RANK = {layer: rank for rank, layer in enumerate(LAYERS)}
# The only project modules imported inside functions: they import seqio and tensorflow,
# which code that does not read training data should not pay for.
LAZY = {"data_pipelines.tasks", "data_pipelines.feature_converters"}


def layer_of(module: str) -> str | None:
    """The layer of the longest `LAYERS` entry that is `module` or a package above it."""
    matches = [
        (len(entry), layer)
        for layer, entries in LAYERS.items()
        for entry in entries
        # A package's own entry ("cpt_jax": its __init__) covers no module below it.
        if module == entry or (module.startswith(entry + ".") and entry not in PACKAGES)
    ]
    return max(matches)[1] if matches else None


def project_imports(source: str, path: str) -> list[tuple[int, str, bool]]:
    """`(line, module, in a function)` of every import of a project module in `source`; for
    `from pkg import name`, the submodule `pkg.name` when there is one, else `pkg`."""
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((child.lineno, a.name, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                for alias in child.names:
                    submodule = f"{child.module}.{alias.name}"
                    base = os.path.join(REPO, *submodule.split("."))
                    is_module = os.path.isdir(base) or os.path.exists(base + ".py")
                    module = submodule if is_module else child.module
                    found.append((child.lineno, module, in_function))
            function = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            visit(child, in_function or function)

    visit(ast.parse(source, filename=path), False)
    return [found_import for found_import in found if found_import[1].split(".")[0] in PACKAGES]


def violations(module: str, source: str, path: str) -> list[str]:
    """What is wrong with `module`'s imports, one message per import (none: all fine)."""
    layer = layer_of(module)
    if layer is None:
        return [f"{path}: {module} has no layer in tests/test_layers.py LAYERS"]
    problems = []
    for line, imported, in_function in project_imports(source, path):
        target = layer_of(imported)
        where = f"{path}:{line}: {module} ({layer}) imports {imported}"
        if in_function and imported not in LAZY:
            problems.append(f"{where} inside a function: project imports go at the top")
        elif target is None:
            problems.append(f"{where}, which has no layer")
        elif RANK[target] > RANK[layer]:
            problems.append(f"{where} ({target}), a layer above it")
        elif (
            layer == "library"
            and module.startswith("cpt_jax")
            and imported.startswith("data_pipelines")
        ):
            problems.append(f"{where}: the cpt_jax library never imports data_pipelines")
    return problems


def project_modules():
    for package in PACKAGES:
        for directory, _, names in os.walk(os.path.join(REPO, package)):
            for name in sorted(names):
                if name.endswith(".py"):
                    path = os.path.relpath(os.path.join(directory, name), REPO)
                    module = path[: -len(".py")].replace(os.sep, ".").removesuffix(".__init__")
                    yield module, path


def test_every_import_goes_down_the_layers():
    problems = []
    for module, path in project_modules():
        with open(os.path.join(REPO, path), encoding="utf-8") as f:
            problems += violations(module, f.read(), path)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "module, source, expected",
    [
        # A library module importing an application: the upward import the test exists for.
        ("cpt_jax.losses", "from cpt_jax import train\n", "a layer above it"),
        ("cpt_jax.files", "import cpt_jax.embed\n", "a layer above it"),
        ("cpt_jax.embed", "from data_pipelines import corpus\n", "never imports data_pipelines"),
        ("cpt_jax.shiny_new", "import os\n", "has no layer"),
        ("cpt_jax.train", "def f():\n    from cpt_jax import embed\n", "go at the top"),
    ],
)
def test_the_layer_check_catches(module, source, expected):
    (problem,) = violations(module, source, "x.py")
    assert expected in problem


def test_the_layer_check_allows_downward_and_sideways_imports():
    assert violations("cpt_jax.train", "from data_pipelines import tasks\n", "x.py") == []
    assert violations("data_pipelines.pipeline", "from cpt_jax import files\n", "x.py") == []
    assert violations("cpt_jax.search.index", "from cpt_jax.embed import Embedder\n", "x") == []
    lazy = "def f():\n    from data_pipelines import tasks\n"
    assert violations("data_pipelines.pipeline", lazy, "x.py") == []
