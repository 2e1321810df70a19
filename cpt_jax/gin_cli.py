"""The launchers' command line, t5x style: gin files, `--gin.KEY=VALUE` bindings, and the
flags that join a multi-process job.

`parse_args` turns the command line into `LaunchArgs`; `parse_gin` parses the gin files
(found in the working directory, the search paths or `gin_configs/`) and bindings. The
configurables the files bind must be registered first, by importing their modules
(`cpt_jax.train` registers `train` and, through its imports, the rest).
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import NamedTuple

import gin

from cpt_jax import multihost

GIN_CONFIGS_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "gin_configs")


class LaunchArgs(NamedTuple):
    """The parsed command line: gin files, bindings and search paths, and the multi-process
    options (None for a single process)."""

    gin_files: list[str]
    gin_bindings: list[str]
    gin_search_paths: list[str]
    distributed: multihost.DistributedOptions | None


def parse_args(
    argv: list[str],
    environ=os.environ,
    *,
    prog: str = "python -m cpt_jax.train",
    description: str | None = None,
) -> LaunchArgs:
    """Parses t5x-style arguments (`prog` and `description` are shown by `--help`).

    `--gin.KEY=VALUE` becomes the binding `KEY = VALUE`; `--gin_bindings=...` is taken as is.
    `--coordinator_address`, `--process_count` and `--process_index` (or the environment
    variables `COORDINATOR_ADDRESS`, `PROCESS_COUNT`, `PROCESS_INDEX`) join a multi-process
    job; all three or none. Errors exit with a message (`SystemExit`).
    """
    gin_args = [a for a in argv if a.startswith("--gin.")]
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gin_file", action="append", default=[], help="gin file (repeatable)")
    parser.add_argument("--gin_bindings", action="append", default=[], help="gin binding")
    parser.add_argument(
        "--gin_search_paths", action="append", default=[], help="extra include dirs"
    )
    group = parser.add_argument_group("multi-process jobs (one process per host)")
    group.add_argument("--coordinator_address", help="host:port of process 0")
    group.add_argument("--process_count", type=int, help="number of processes")
    group.add_argument("--process_index", type=int, help="this process's index")
    group.add_argument(
        "--initialization_timeout", type=int, default=300, help="seconds to wait for all peers"
    )
    group.add_argument(
        "--heartbeat_timeout",
        type=int,
        default=multihost.DEFAULT_HEARTBEAT_TIMEOUT_S,
        help="seconds after which a silent peer (dead, stopped, cut off) is declared dead and "
        "every process stops with an error naming it",
    )
    args = parser.parse_args([a for a in argv if not a.startswith("--gin.")])
    bindings = list(args.gin_bindings)
    for arg in gin_args:
        key, sep, value = arg[len("--gin.") :].partition("=")
        if not sep:
            raise SystemExit(f"error: {arg!r} needs a value: --gin.KEY=VALUE")
        bindings.append(f"{key} = {value}")
    if not args.gin_file:
        raise SystemExit("error: at least one --gin_file is required")
    try:
        distributed = multihost.options_from(
            args.coordinator_address,
            args.process_count,
            args.process_index,
            environ=environ,
            initialization_timeout_s=args.initialization_timeout,
            heartbeat_timeout_s=args.heartbeat_timeout,
        )
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    return LaunchArgs(args.gin_file, bindings, args.gin_search_paths, distributed)


def parse_gin(gin_files: list[str], bindings: list[str], search_paths: list[str] = ()) -> None:
    """Parses gin files (resolved against cwd, the search paths, and `gin_configs/`), then
    the bindings; the config is left unfinalised."""
    paths = [os.getcwd(), *search_paths, GIN_CONFIGS_DIR]
    for path in paths:
        gin.add_config_file_search_path(path)
    _make_gin_resource_lookup_tolerant()
    resolved = []
    for name in gin_files:
        found = [os.path.join(p, name) for p in paths if os.path.isfile(os.path.join(p, name))]
        if not found:
            raise FileNotFoundError(f"gin file {name!r} not found in {paths}")
        resolved.append(os.path.abspath(found[0]))
    gin.parse_config_files_and_bindings(resolved, bindings, finalize_config=False)


def _make_gin_resource_lookup_tolerant() -> None:
    """Works around gin treating `dir/file.gin` as a Python package resource (and its noise).

    For an include such as `models/tiny.gin`, gin asks `importlib` for a package `models`;
    when a plain directory of that name is on `sys.path` (a `models/` or `runs/` folder in the
    working directory), it is a namespace package without an origin, and gin crashes with a
    TypeError instead of moving on to the next search path.
    """
    # Its failed lookups are logged as errors on the root logger; they are expected misses.
    root = logging.getLogger()
    if not any(getattr(f, "_cpt_gin", False) for f in root.filters):
        quiet = logging.Filter()
        quiet.filter = lambda record: record.module != "resource_reader"
        quiet._cpt_gin = True
        root.addFilter(quiet)
    readers = gin.config._FILE_READERS  # noqa: SLF001 (no public hook for this)
    for i, (reader, exists) in enumerate(readers):
        if getattr(exists, "_cpt_tolerant", False):
            continue

        def tolerant(path, exists=exists):
            try:
                return exists(path)
            except TypeError:
                return False

        tolerant._cpt_tolerant = True
        readers[i] = (reader, tolerant)
