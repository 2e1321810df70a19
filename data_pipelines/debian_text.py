"""Debian package descriptions as text pairs: short -> long description, neighbouring paragraphs.

Every binary package in Debian's archive has a one-line short description (its synopsis) and a
long description of a few paragraphs, written by its maintainers. `apt-get update` with
`Acquire::Languages=en` fetches them: the `Packages` list holds each package's `Package`,
`Source`, `Section`, short description and `Description-md5`; the `Translation-en` list holds
the full English description under the same md5. Two kinds of records (field `kind`):

* `short_long`: query = the short description, document = the long description;
* `neighbour_paragraphs`: query = a paragraph of the long description, document = the next one.

Every record also has `package`, `source` (the Debian source package) and `label` (the
package's `Section`, without its `contrib/`, `non-free/` prefix: a class label).

Filters (each dropped item is counted in the manifest's `skipped`, by reason):

* whole packages: transitional and dummy packages (`transitional_package`), debug-symbol
  packages (`debug_symbols_package`);
* paragraphs shared by the long descriptions of more than `max_sources_per_paragraph` source
  packages (templates such as "Node.js is an event-based server-side JavaScript engine." or
  the Haskell library boilerplate): removed from both kinds (`paragraph_shared_across_sources`);
* `short_long`: a long description under `min_document_words` words once shared paragraphs
  are removed, or a near-duplicate of one kept earlier for the same source (the binary
  packages of one source often share their long description: one per source is kept, the
  source package's namesake first);
* `neighbour_paragraphs`: `text.filtered_pairs` (generic boilerplate, paragraphs
  near-duplicating one kept earlier for the same source), plus short notes about the package
  split ("This package contains the development files.", `chunk_package_note`) and
  catalogue entries ("placeins -- Control float placement", `chunk_catalogue_entry`: TeX
  Live lists the CTAN packages it ships, alphabetical neighbours that are not related);
* `corpus.build` removes exact duplicates with the key (kind, whitespace-normalised document).

Splits are by *source* package (`split_for_source`): `int(sha1(source).hexdigest(), 16) % 10`
is 0 -> test, the held-out set reserved for evaluation (docs/design.md, held-out data:
never training or tuning), 1 -> validation, anything else -> train. All binary packages of
one source land in one split.

Reproducibility. The lists are fetched into a private directory (`OUT_DIR/downloads/lists` by
default; nothing under the system's `/var/lib/apt` is written) from Debian 12 "bookworm"
main. The mirror moves (a point release replaces the lists), so the default build is pinned:
the sha256 of the `Packages` and `Translation-en` files (keys as in the Release file,
`debian_packages.PINNED_SHA256`, from bookworm 12.15) are checked, and list files already in
the cache that match the pins are used without any network access. When the
mirror has moved, the error says so; `--unpinned` builds from whatever the mirror serves
(the manifest records what that was), `--expect_sha256 PATH=HEX` pins other files, and
`--lists_dir DIR` builds offline from list files fetched earlier (plain or .gz/.xz/.bz2/.lz4).
The manifest records the Release file's Origin, Suite, Version and Date, and the sha256 of
every list file used (and whether it matches the hash in that Release file). apt itself
verifies the Release file's signature and the lists' hashes when it fetches them.

CLI:
  python -m data_pipelines.build debian_text
  python -m data_pipelines.build debian_text --lists_dir data/debian_text/downloads/lists
  python -m data_pipelines.build debian_text --unpinned       # whatever the mirror has now
"""

from __future__ import annotations

import argparse
import collections
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

from data_pipelines import corpus, splits
from data_pipelines.debian_packages import (
    DEFAULT_MIRROR,
    DEFAULT_SUITE,
    PINNED_SHA256,
    check_pins,
    describe_lists,
    description_md5,
    fetch_lists,
    find_list_files,
    iter_paragraphs,
    read_list_file,
)
from data_pipelines.text import (
    NearDuplicateFilter,
    filtered_pairs,
    normalise_whitespace,
    split_paragraphs,
)

KINDS = ("short_long", "neighbour_paragraphs")
DEFAULT_MIN_DOCUMENT_WORDS = 10
DEFAULT_MAX_SOURCES_PER_PARAGRAPH = 2
# Bump when the extraction changes: it is part of the description, so old unit caches are
# never reused for a different extraction.
EXTRACTION_VERSION = 1

# Debian package names (policy 5.6.1), used for source names that decide the split.
_PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
# A line of a long description that starts a list item keeps its own line.
_BULLET = re.compile(r"^(?:[-*+•o]|\d{1,2}[.)])\s")
_TRANSITIONAL = re.compile(
    r"\btransitional\s+(?:dummy\s+|empty\s+|meta-?)?package\b|"
    r"\bdummy\s+(?:transitional\s+)?package\b|"
    r"\b(?:can|may)\s+(?:be\s+)?safely\s+(?:be\s+)?removed\b",
    re.IGNORECASE,
)
_DEBUG_SYMBOLS = re.compile(r"\bdebug(?:ging)?\s+symbols\b", re.IGNORECASE)
_PACKAGE_NOTE = re.compile(
    r"^(?:this|the)\s+(?:meta-?)?package\s+"
    r"(?:contains|provides|includes|installs|ships|is|was|holds|enables|will)\b",
    re.IGNORECASE,
)
PACKAGE_NOTE_MAX_WORDS = 25
# "name -- synopsis": one entry of a catalogue (TeX Live's lists of the CTAN packages it ships).
_CATALOGUE_ENTRY = re.compile(r"^[\w.+-]+ --? \S")
CATALOGUE_ENTRY_MAX_WORDS = 30


# ----------------------------------------------------------------------------- descriptions


def format_paragraph(paragraph: str) -> str:
    """One paragraph of a long description as text: wrapped lines joined with spaces.

    Whitespace runs become one space; a line that starts a list item (`*`, `-`, `+`, `o`,
    `•`, `1.`, `2)`) starts a new line, so lists stay readable.
    """
    lines: list[str] = []
    for raw in paragraph.split("\n"):
        line = normalise_whitespace(raw)
        if not line:
            continue
        if lines and not _BULLET.match(line):
            lines[-1] += " " + line
        else:
            lines.append(line)
    return "\n".join(lines)


def long_description_paragraphs(continuation: str) -> list[str]:
    """The paragraphs of a long description (the continuation lines of a description field).

    Debian policy 5.6.13: each line starts with a space; a line " ." is an empty line (a
    paragraph break); lines starting with two spaces or more are shown verbatim (here: a
    list item keeps its own line, see `format_paragraph`).
    """
    lines = ["" if line.strip() == "." else line for line in continuation.split("\n")]
    return [p for p in map(format_paragraph, split_paragraphs("\n".join(lines))) if p]


class BinaryPackage(NamedTuple):
    """One binary package's description as read from the lists."""

    package: str
    source: str
    section: str
    short: str
    paragraphs: tuple[str, ...]  # of the long description, formatted


def read_translations(paths: Iterable[str], skipped: Counter) -> dict[str, str]:
    """`Description-md5 -> full description` of `Translation-en` files (first file wins).

    Dropped and counted (besides `iter_paragraphs`'s reasons): `malformed_translation` (no
    `Description-md5` or `Description-en`), `translation_md5_mismatch` (the text does not
    hash to its md5: a corrupt or edited entry).
    """
    translations: dict[str, str] = {}
    for path in paths:
        for _, fields in iter_paragraphs(read_list_file(path), skipped):
            md5, text = fields.get("description-md5"), fields.get("description-en")
            if not md5 or text is None:
                skipped["malformed_translation"] += 1
            elif description_md5(text) != md5:
                skipped["translation_md5_mismatch"] += 1
            else:
                translations.setdefault(md5, text)
    return translations


def read_packages(
    paths: Iterable[str], translations: dict[str, str], skipped: Counter
) -> list[BinaryPackage]:
    """The binary packages of `Packages` files with their descriptions, in file order.

    The long description is the one in the `Packages` entry when it has one, else the
    `Translation-en` entry with the same `Description-md5`. `Source` defaults to `Package`
    (its "(version)" part is dropped); `Section` loses its `contrib/`, `non-free/`... prefix.
    Dropped and counted: `package_missing_field` (no `Package`, `Description` or `Section`),
    `invalid_name` (package or source name not in Debian's syntax), `duplicate_package` (a
    name seen before, e.g. in a second Packages file: the first entry wins),
    `missing_translation` (no description with the entry's `Description-md5`), besides
    `iter_paragraphs`'s reasons.
    """
    packages, seen = [], set()
    for path in paths:
        for _, fields in iter_paragraphs(read_list_file(path), skipped):
            package, section = fields.get("package", ""), fields.get("section", "")
            description = fields.get("description")
            if not package or not section or description is None:
                skipped["package_missing_field"] += 1
                continue
            source = (fields.get("source") or package).split()[0]
            if not (_PACKAGE_NAME.match(package) and _PACKAGE_NAME.match(source)):
                skipped["invalid_name"] += 1
                continue
            if package in seen:
                skipped["duplicate_package"] += 1
                continue
            if "\n" not in description:
                description = translations.get(fields.get("description-md5", ""))
                if description is None:
                    skipped["missing_translation"] += 1
                    continue
            seen.add(package)
            short, _, continuation = description.partition("\n")
            packages.append(
                BinaryPackage(
                    package=package,
                    source=source,
                    section=section.rsplit("/", 1)[-1],
                    short=normalise_whitespace(short),
                    paragraphs=tuple(long_description_paragraphs(continuation)),
                )
            )
    return packages


def package_skip_reason(package: BinaryPackage) -> str | None:
    """Why a whole package gives no records: `transitional_package`, `debug_symbols_package`."""
    text = package.short + "\n" + "\n".join(package.paragraphs)
    if _TRANSITIONAL.search(text):
        return "transitional_package"
    if package.package.endswith(("-dbg", "-dbgsym")) or _DEBUG_SYMBOLS.search(package.short):
        return "debug_symbols_package"
    return None


def is_package_note(paragraph: str) -> bool:
    """A short paragraph about the package split ("This package contains the headers.")."""
    return bool(_PACKAGE_NOTE.match(paragraph)) and (
        len(paragraph.split()) <= PACKAGE_NOTE_MAX_WORDS
    )


def is_catalogue_entry(paragraph: str) -> bool:
    """A paragraph that is one "name -- synopsis" entry of a list of packages or commands."""
    return bool(_CATALOGUE_ENTRY.match(paragraph)) and (
        len(paragraph.split()) <= CATALOGUE_ENTRY_MAX_WORDS
    )


def shared_paragraphs(packages: Iterable[BinaryPackage], max_sources: int) -> set[str]:
    """Whitespace-normalised paragraphs found in the descriptions of over `max_sources` sources."""
    sources: dict[str, set[str]] = collections.defaultdict(set)
    for package in packages:
        for paragraph in package.paragraphs:
            sources[normalise_whitespace(paragraph)].add(package.source)
    return {text for text, found in sources.items() if len(found) > max_sources}


def split_for_source(source: str) -> str:
    """The split of a source package: sha1 % 10 is 0 -> test (reserved), 1 -> validation."""
    return splits.split_by_hash(source)


def by_source(packages: Iterable[BinaryPackage]) -> list[list[BinaryPackage]]:
    """Packages grouped by source, sources sorted by name; the source's namesake first."""
    groups: dict[str, list[BinaryPackage]] = collections.defaultdict(list)
    for package in packages:
        groups[package.source].append(package)
    return [
        sorted(groups[source], key=lambda p: (p.package != source, p.package))
        for source in sorted(groups)
    ]


def description_records(
    packages: Sequence[BinaryPackage],
    skipped: Counter,
    *,
    min_document_words: int = DEFAULT_MIN_DOCUMENT_WORDS,
    max_sources_per_paragraph: int = DEFAULT_MAX_SOURCES_PER_PARAGRAPH,
    near_duplicate_threshold: float = 0.7,
) -> Iterator[dict]:
    """The records of `packages` (see the module docstring), source by source.

    Counted besides the package filters: `paragraph_shared_across_sources`,
    `no_long_description`, `long_description_too_short`, `long_description_near_duplicate`,
    `chunk_package_note`, `chunk_catalogue_entry` and `filtered_pairs`'s `chunk_*` and
    `neighbour_description_under_two_chunks`.
    """
    shared = shared_paragraphs(packages, max_sources_per_paragraph)
    for group in by_source(packages):
        documents = NearDuplicateFilter(near_duplicate_threshold)
        chunks_seen = NearDuplicateFilter(near_duplicate_threshold)
        for package in group:
            reason = package_skip_reason(package)
            if reason is not None:
                skipped[reason] += 1
                continue
            paragraphs = []
            for paragraph in package.paragraphs:
                if normalise_whitespace(paragraph) in shared:
                    skipped["paragraph_shared_across_sources"] += 1
                else:
                    paragraphs.append(paragraph)
            meta = {"package": package.package, "source": package.source, "label": package.section}
            document = "\n\n".join(paragraphs)
            if not package.paragraphs:
                skipped["no_long_description"] += 1
            elif len(document.split()) < min_document_words:
                skipped["long_description_too_short"] += 1
            elif not documents.add_if_new(normalise_whitespace(document)):
                skipped["long_description_near_duplicate"] += 1
            else:
                yield {"query": package.short, "document": document, "kind": KINDS[0], **meta}
            chunks = []
            for paragraph in paragraphs:
                if is_package_note(paragraph):
                    skipped["chunk_package_note"] += 1
                elif is_catalogue_entry(paragraph):
                    skipped["chunk_catalogue_entry"] += 1
                else:
                    chunks.append(paragraph)
            for _, query, document in filtered_pairs(
                chunks, skipped, chunks_seen, what="neighbour_description"
            ):
                yield {"query": query, "document": document, "kind": KINDS[1], **meta}


# ----------------------------------------------------------------------------- builder


class DebianTextBuilder(corpus.Builder):
    """Debian package descriptions of the list files in `lists_dir`; one unit.

    The unit is the whole set of lists: the shared-paragraph statistics and the joins of
    `Packages` with `Translation-en` need all of them, and extraction takes about 20 s.
    `expected_sha256` (release path -> sha256) is checked at construction.
    """

    name = "debian_text"

    def __init__(
        self,
        lists_dir: str,
        *,
        expected_sha256: dict[str, str] | None = None,
        min_document_words: int = DEFAULT_MIN_DOCUMENT_WORDS,
        max_sources_per_paragraph: int = DEFAULT_MAX_SOURCES_PER_PARAGRAPH,
        near_duplicate_threshold: float = 0.7,
        name: str | None = None,
    ):
        self.files = find_list_files(os.path.abspath(lists_dir))
        self.lists = describe_lists(self.files)
        self.expected_sha256 = dict(expected_sha256 or {})
        check_pins(self.lists, self.expected_sha256)
        self.min_document_words = min_document_words
        self.max_sources_per_paragraph = max_sources_per_paragraph
        self.near_duplicate_threshold = near_duplicate_threshold
        if name is not None:
            self.name = name

    def units(self) -> list[corpus.Unit]:
        return [corpus.Unit("descriptions")]

    def extract(self, unit: corpus.Unit, skipped: Counter) -> Iterator[dict]:
        translations = read_translations(self.files.translations, skipped)
        packages = read_packages(self.files.packages, translations, skipped)
        yield from description_records(
            packages,
            skipped,
            min_document_words=self.min_document_words,
            max_sources_per_paragraph=self.max_sources_per_paragraph,
            near_duplicate_threshold=self.near_duplicate_threshold,
        )

    def split(self, record: dict) -> str:
        return split_for_source(record["source"])

    def dedup_key(self, record: dict) -> str | None:
        return f"{record['kind']}\t{normalise_whitespace(record['document'])}"

    def description(self) -> dict:
        return {
            **self.lists,
            "pinned_sha256": self.expected_sha256,
            "extraction_version": EXTRACTION_VERSION,
            "kinds": list(KINDS),
            "min_document_words": self.min_document_words,
            "max_sources_per_paragraph": self.max_sources_per_paragraph,
            "near_duplicate": {
                "threshold": self.near_duplicate_threshold,
                "shingle_words": 3,
                "scope": "one source package",
            },
            "split_rule": "int(sha1(source).hexdigest(), 16) % 10: 0 test (reserved), "
            "1 validation, else train",
        }


# ----------------------------------------------------------------------------- CLI


def _path_and_sha256(text: str) -> tuple[str, str]:
    path, sep, sha256 = text.partition("=")
    if not sep or not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise argparse.ArgumentTypeError(f"expected PATH=SHA256 (64 hex digits), got {text!r}")
    return path, sha256


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the `debian_text` corpus (the defaults build the pinned default corpus)."""
    parser.add_argument(
        "--lists_dir",
        default=None,
        help="build offline from apt list files already in this directory (*_Packages, "
        "*_i18n_Translation-en, *_InRelease) instead of fetching them",
    )
    parser.add_argument(
        "--cache_dir", default=None, help="where lists are fetched (default: OUT_DIR/downloads)"
    )
    parser.add_argument("--mirror", default=DEFAULT_MIRROR, help="Debian mirror URL")
    parser.add_argument("--suite", default=DEFAULT_SUITE, help="Debian suite")
    parser.add_argument(
        "--expect_sha256",
        type=_path_and_sha256,
        action="append",
        default=None,
        metavar="PATH=SHA256",
        help="pin a list file by its Release path (e.g. main/binary-amd64/Packages); "
        "replaces the default pins (PINNED_SHA256)",
    )
    parser.add_argument(
        "--unpinned",
        action="store_true",
        help="accept whatever list files there are (the manifest still records their sha256)",
    )
    parser.add_argument("--apt_timeout", type=float, default=600, help="seconds")
    parser.add_argument("--min_document_words", type=int, default=DEFAULT_MIN_DOCUMENT_WORDS)
    parser.add_argument(
        "--max_sources_per_paragraph",
        type=int,
        default=DEFAULT_MAX_SOURCES_PER_PARAGRAPH,
        help="a paragraph in the descriptions of more source packages is a template: dropped",
    )
    parser.add_argument("--near_duplicate_threshold", type=float, default=0.7)


def builder_from_args(args: argparse.Namespace) -> DebianTextBuilder:
    """The `debian_text` builder of parsed flags; fetches the lists unless `--lists_dir`."""
    if args.unpinned:
        expected = {}
    elif args.expect_sha256:
        expected = dict(args.expect_sha256)
    else:
        expected = dict(PINNED_SHA256)
    lists_dir = args.lists_dir
    if lists_dir is None:
        cache_dir = args.cache_dir or os.path.join(args.out_dir, "downloads")
        lists_dir = fetch_lists(
            cache_dir,
            mirror=args.mirror,
            suite=args.suite,
            expected=expected,
            timeout=args.apt_timeout,
        )
    return DebianTextBuilder(
        lists_dir,
        expected_sha256=expected,
        min_document_words=args.min_document_words,
        max_sources_per_paragraph=args.max_sources_per_paragraph,
        near_duplicate_threshold=args.near_duplicate_threshold,
    )
