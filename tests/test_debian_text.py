"""Debian package descriptions: deb822 parsing, the Packages/Translation-en join, filters,
records and skip counts on hand-written list files, splits by source, pins, private apt."""

import argparse
import collections
import hashlib
import os
import subprocess

import pytest

from data_pipelines import corpus, debian_packages
from data_pipelines import debian_text as dt

PREFIX = "deb.example.org_debian_dists_testing_"
PACKAGES = PREFIX + "main_binary-amd64_Packages"
TRANSLATION = PREFIX + "main_i18n_Translation-en"
RELEASE = PREFIX + "InRelease"

SHARED = (
    "The Example Toolkit is a collection of portable widgets for building graphical user "
    "interfaces on many platforms."
)
HELLO_1 = (
    "The GNU hello program produces a familiar, friendly greeting. It allows non-programmers "
    "to use a classic computer science tool which would otherwise be unavailable to them."
)
HELLO_2 = (
    "Seriously, though: this is an example of how to do a Debian package. It is the Debian "
    "version of the GNU Project's hello world program (which is itself an example for the GNU "
    "Project)."
)
BETA = "Beta computes checksums of large files in parallel, using every available processor core."
ZETA = "Zeta bundles small LaTeX packages that were written for typesetting music scores."
ZETA_CATALOGUE = ("abc -- Support ABC music notation in LaTeX", "musixtex -- Typeset music")
VCARD = "Entries can be exported as vCard files for use with other address books."


def wrap(text: str, width: int = 60) -> list[str]:
    """`text` as description lines of at most about `width` characters (each without the space)."""
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return [*lines, line] if line else lines


def long_lines(*paragraphs: str) -> list[str]:
    """Continuation lines of a long description: ' ' + text, ' .' between paragraphs."""
    lines = []
    for i, paragraph in enumerate(paragraphs):
        if i:
            lines.append(" .")
        lines += [" " + line for line in wrap(paragraph)]
    return lines


def description_value(short: str, lines: list[str]) -> str:
    return "\n".join([short, *lines])


def md5(short: str, lines: list[str]) -> str:
    # Debian's Description-md5: the field value (short line, continuation lines), newline-ended.
    return hashlib.md5((description_value(short, lines) + "\n").encode()).hexdigest()


def translation(package: str, short: str, lines: list[str], md5sum: str | None = None) -> str:
    value = description_value(short, lines)
    return (
        f"Package: {package}\nDescription-md5: {md5sum or md5(short, lines)}\n"
        f"Description-en: {value}\n"
    )


def binary(package: str, section: str, short: str, lines: list[str], source: str = "") -> str:
    """A Packages entry whose long description lives in Translation-en."""
    return (
        f"Package: {package}\n"
        + (f"Source: {source}\n" if source else "")
        + f"Version: 1.0-1\nArchitecture: amd64\nDescription: {short}\n"
        f"Description-md5: {md5(short, lines)}\nTag: role::program,\n use::example\n"
        f"Section: {section}\nPriority: optional\n"
    )


DESCRIPTIONS = {  # package -> (short, long description lines), all in Translation-en
    "alpha": ("transitional package for beta", long_lines("This is a transitional package.")),
    "beta": ("parallel checksum tool", long_lines(BETA)),
    "beta-dbg": ("debugging symbols for beta", long_lines("Debugging symbols for beta.")),
    "chi-widgets": (
        "chart widgets for the Example Toolkit",
        long_lines(SHARED, "Chi adds widgets for drawing charts, plots and diagrams to windows."),
    ),
    "hello": ("example package based on GNU hello", long_lines(HELLO_1, HELLO_2)),
    "hello-data": (
        "data for hello",
        long_lines(HELLO_1, HELLO_2.replace("Seriously", "Honestly")),
    ),
    "hello-doc": (
        "documentation for hello",
        long_lines(HELLO_1, "This package contains the documentation for hello."),
    ),
    "iota": (
        "icon theme for the Example Toolkit",
        long_lines(SHARED, "Iota draws every icon as scalable vector graphics in four sizes."),
    ),
    "kappa": ("tool whose description is not translated", long_lines("Never found here.")),
    "lambda": ("tool with a corrupt translation", long_lines("The md5 does not match this.")),
    "mu": ("tool with a Latin-1 translation", long_lines("Ren\xe9 wrote this text.")),
    "omega": ("tool without a long description", []),
    "psi": ("tiny tool", long_lines("A small tool.")),
    "rho": (
        "tool to count words in files",
        [
            " Rho counts the words, lines and characters of each file given on its",
            " command line, and prints a total when given more than one file.",
            " .",
            " Features:",
            "  * counts words in any encoding supported by the C library",
            "  * reads standard input when no file is given",
            " .",
            " The output format is compatible with the classic wc utility.",
        ],
    ),
    "tau": ("another checksum tool", long_lines(BETA)),
    "upsilon": ("vCard exporter", long_lines(VCARD)),
    "xi": (
        "X11 bindings for the Example Toolkit",
        long_lines(SHARED, "Xi connects toolkit windows to the X Window System protocol."),
    ),
    "zeta": (
        "music typesetting packages for LaTeX",
        long_lines(ZETA, *ZETA_CATALOGUE),
    ),
}
SECTIONS = {"alpha": "oldlibs", "beta": "utils", "beta-dbg": "debug", "chi-widgets": "libs"}
SECTIONS |= {"hello": "devel", "hello-data": "devel", "hello-doc": "doc", "iota": "libs"}
SECTIONS |= {"kappa": "misc", "lambda": "misc", "mu": "misc", "omega": "misc", "psi": "misc"}
SECTIONS |= {"rho": "text", "tau": "utils", "upsilon": "utils", "xi": "non-free/x11"}
SECTIONS |= {"zeta": "tex"}
SOURCES = {"beta-dbg": "beta", "chi-widgets": "chi (2.0-1)", "hello-data": "hello (2.10-3)"}
SOURCES |= {"hello-doc": "hello"}
PHI_DESCRIPTION = (  # phi's long description is in its Packages entry (no translation needed)
    "Description: simple phone book for the terminal\n"
    " Phi keeps names, telephone numbers and addresses in a plain text file\n"
    " and finds entries by any part of a name.\n"
    " .\n"
    " Entries can be exported as vCard files for use with other address books.\n"
)


def packages_bytes() -> bytes:
    entries = [
        binary(p, SECTIONS[p], short, lines, SOURCES.get(p, "")).encode()
        for p, (short, lines) in DESCRIPTIONS.items()
    ]
    entries += [
        b"Package: garbage\nthis line has no colon\nSection: misc\nDescription: x\n",
        b" continuation before any field\nPackage: cont\nSection: misc\nDescription: x\n",
        b"Version: 1.0\nSection: misc\nDescription: no package field\n",
        b"Package: nu\nMaintainer: Ren\xe9 <r@example.org>\nSection: misc\nDescription: x\n",
        ("Package: phi\nVersion: 0.3-2\nSection: contrib/utils\n" + PHI_DESCRIPTION).encode(),
    ]
    return b"\n".join(entries)


def translation_bytes() -> bytes:
    entries = []
    for package, (short, lines) in DESCRIPTIONS.items():
        if package == "kappa":
            continue  # its Description-md5 matches nothing
        if package == "lambda":
            entries.append(translation(package, short, lines, md5sum="0" * 32).encode())
        elif package == "mu":
            entries.append(translation(package, short, lines).encode("latin-1"))
        else:
            entries.append(translation(package, short, lines).encode())
    return b"\r\n".join(e.replace(b"\n", b"\r\n") for e in entries)  # CRLF is accepted too


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def lists_dir(tmp_path):
    packages, translations = packages_bytes(), translation_bytes()
    (tmp_path / PACKAGES).write_bytes(packages)
    (tmp_path / TRANSLATION).write_bytes(translations)
    (tmp_path / RELEASE).write_text(
        "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n"
        "Origin: Example\nSuite: testing\nVersion: 99\nCodename: example\n"
        "Date: Mon, 01 Jan 2024 00:00:00 UTC\n"
        "SHA256:\n"
        f" {sha256(packages)} {len(packages)} main/binary-amd64/Packages\n"
        f" {'1' * 64} {len(translations)} main/i18n/Translation-en\n"
        "-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----\n"
    )
    return str(tmp_path)


def paragraphs_text(*paragraphs: str) -> str:
    return "\n\n".join(paragraphs)


RHO_FEATURES = (
    "Features:\n* counts words in any encoding supported by the C library\n"
    "* reads standard input when no file is given"
)
RHO_1 = (
    "Rho counts the words, lines and characters of each file given on its command line, and "
    "prints a total when given more than one file."
)
RHO_3 = "The output format is compatible with the classic wc utility."
PHI_1 = (
    "Phi keeps names, telephone numbers and addresses in a plain text file and finds entries by "
    "any part of a name."
)


def record(kind, query, document, package, label, source=None):
    return {
        "query": query,
        "document": document,
        "kind": kind,
        "package": package,
        "source": source or package,
        "label": label,
    }


# Sources sorted by name; within a source its namesake first.
EXPECTED = [
    record("short_long", "parallel checksum tool", BETA, "beta", "utils"),
    record(
        "short_long",
        "chart widgets for the Example Toolkit",
        "Chi adds widgets for drawing charts, plots and diagrams to windows.",
        "chi-widgets",
        "libs",
        source="chi",
    ),
    record(
        "short_long",
        "example package based on GNU hello",
        f"{HELLO_1}\n\n{HELLO_2}",
        "hello",
        "devel",
    ),
    record("neighbour_paragraphs", HELLO_1, HELLO_2, "hello", "devel"),
    record(
        "short_long",
        "documentation for hello",
        f"{HELLO_1}\n\nThis package contains the documentation for hello.",
        "hello-doc",
        "doc",
        source="hello",
    ),
    record(
        "short_long",
        "icon theme for the Example Toolkit",
        "Iota draws every icon as scalable vector graphics in four sizes.",
        "iota",
        "libs",
    ),
    record(
        "short_long", "simple phone book for the terminal", f"{PHI_1}\n\n{VCARD}", "phi", "utils"
    ),
    record("neighbour_paragraphs", PHI_1, VCARD, "phi", "utils"),
    record(
        "short_long",
        "tool to count words in files",
        paragraphs_text(RHO_1, RHO_FEATURES, RHO_3),
        "rho",
        "text",
    ),
    record("neighbour_paragraphs", RHO_1, " ".join(RHO_FEATURES.split()), "rho", "text"),
    record("neighbour_paragraphs", " ".join(RHO_FEATURES.split()), RHO_3, "rho", "text"),
    record("short_long", "another checksum tool", BETA, "tau", "utils"),
    record("short_long", "vCard exporter", VCARD, "upsilon", "utils"),
    record(
        "short_long",
        "X11 bindings for the Example Toolkit",
        "Xi connects toolkit windows to the X Window System protocol.",
        "xi",
        "x11",
    ),
    record(
        "short_long",
        "music typesetting packages for LaTeX",
        paragraphs_text(ZETA, *ZETA_CATALOGUE),
        "zeta",
        "tex",
    ),
]
EXPECTED_SKIPPED = {
    "chunk_near_duplicate": 3,  # hello-data's two paragraphs, hello-doc's first
    "chunk_package_note": 1,  # hello-doc: "This package contains the documentation..."
    "chunk_too_short": 1,  # psi
    "debug_symbols_package": 1,  # beta-dbg
    "long_description_near_duplicate": 1,  # hello-data (one word differs from hello's)
    "long_description_too_short": 1,  # psi
    "malformed_paragraph": 2,  # a line without a colon; a continuation before any field
    "missing_translation": 3,  # kappa (no entry), lambda (bad md5), mu (not UTF-8)
    "chunk_catalogue_entry": 2,  # zeta's "name -- synopsis" paragraphs
    "neighbour_description_under_two_chunks": 11,
    "no_long_description": 1,  # omega
    "non_utf8_paragraph": 2,  # mu's translation, nu's Packages entry
    "package_missing_field": 1,  # an entry without Package
    "paragraph_shared_across_sources": 3,  # SHARED, in chi, iota and xi
    "transitional_package": 1,  # alpha
    "translation_md5_mismatch": 1,  # lambda
}


def test_builder_extracts_exact_records_and_skip_counts(lists_dir):
    builder = dt.DebianTextBuilder(lists_dir)
    skipped = collections.Counter()
    (unit,) = builder.units()
    assert list(builder.extract(unit, skipped)) == EXPECTED
    assert dict(skipped) == EXPECTED_SKIPPED


def test_build_end_to_end(lists_dir, tmp_path):
    out = str(tmp_path / "corpus")
    manifest = corpus.build(dt.DebianTextBuilder(lists_dir), out, log=lambda *_: None)
    # tau's document repeats beta's (same kind): removed; upsilon's short_long document equals
    # phi's second paragraph, a neighbour_paragraphs document: another kind, so both stay.
    assert manifest["skipped"] == {**EXPECTED_SKIPPED, "duplicate": 1}
    # Splits by source: sha1 % 10 is 7 beta, 8 upsilon, 3 zeta; 1 hello, phi, rho; 0 chi, iota, xi.
    assert manifest["counts"] == {"train": 3, "validation": 8, "test": 3}
    fields = ("query", "document", "kind", "package", "source", "label")
    by_split = {
        split: [{k: r[k] for k in fields} for r in corpus.read_split(out, split)]
        for split in corpus.SPLITS
    }
    assert by_split["train"] == [EXPECTED[0], EXPECTED[12], EXPECTED[14]]
    assert by_split["test"] == [EXPECTED[1], EXPECTED[5], EXPECTED[13]]
    assert by_split["validation"] == EXPECTED[2:5] + EXPECTED[6:11]
    source = manifest["source"]
    assert source["releases"][0]["Date"] == "Mon, 01 Jan 2024 00:00:00 UTC"
    assert source["releases"][0]["Version"] == "99"
    files = {f["file"]: f for f in source["files"]}
    assert files[PACKAGES]["sha256"] == sha256(packages_bytes())
    assert files[PACKAGES]["matches_release"] is True
    assert files[TRANSLATION]["matches_release"] is False  # the Release lists another hash


@pytest.mark.parametrize(
    "source, split",
    [
        ("iota", "test"),  # sha1 660c4445...: int % 10 == 0
        ("xi", "test"),
        ("chi", "test"),
        ("rho", "validation"),  # ecd50cc2...: == 1
        ("phi", "validation"),
        ("hello", "validation"),
        ("alpha", "train"),  # == 9
        ("bash", "train"),  # == 2
        ("coreutils", "train"),  # == 3
    ],
)
def test_split_by_source(source, split):
    # Buckets computed independently: `printf %s NAME | sha1sum`, then the hex number mod 10.
    assert dt.split_for_source(source) == split


def test_description_md5_matches_debian():
    # The 0ad entry of bookworm's Translation-en, with its published Description-md5.
    text = (
        "Real-time strategy game of ancient warfare\n"
        ' 0 A.D. (pronounced "zero ey-dee") is a free, open-source, cross-platform\n'
        " real-time strategy (RTS) game of ancient warfare. In short, it is a\n"
        " historically-based war/economy game that allows players to relive or rewrite\n"
        " the history of Western civilizations, focusing on the years between 500 B.C.\n"
        " and 500 A.D. The project is highly ambitious, involving state-of-the-art 3D\n"
        " graphics, detailed artwork, sound, and a flexible and powerful custom-built\n"
        " game engine."
    )
    assert debian_packages.description_md5(text) == "d943033bedada21853d2ae54a2578a7b"


def test_iter_paragraphs_fields_and_line_numbers():
    data = b"A: 1\nLong: first\n  second\n .\n\n\n# comment\nB:two\nc-D:  x \n"
    skipped = collections.Counter()
    assert list(debian_packages.iter_paragraphs(data, skipped)) == [
        (1, {"a": "1", "long": "first\n  second\n ."}),
        (7, {"b": "two", "c-d": "x "}),
    ]
    assert not skipped
    bad = b"A: 1\nA: 2\n\n-X: 1\n\nB: 1\n"
    assert [f for _, f in debian_packages.iter_paragraphs(bad, skipped)] == [{"b": "1"}]
    assert skipped == {"malformed_paragraph": 2}  # a repeated field; a name starting with '-'


def test_long_description_paragraphs():
    continuation = "\n".join(
        [
            " First   paragraph,",
            " wrapped.",
            " .",
            " List:",
            "  - one item",
            "    continued",
            "  1. numbered",
            " .",
            " .",
            "   verbatim text",
        ]
    )
    assert dt.long_description_paragraphs(continuation) == [
        "First paragraph, wrapped.",
        "List:\n- one item continued\n1. numbered",
        "verbatim text",
    ]
    assert dt.long_description_paragraphs("") == []


def test_package_filters():
    def package(name, short, *paragraphs):
        return dt.BinaryPackage(name, name, "misc", short, paragraphs)

    assert dt.package_skip_reason(package("a", "dummy package")) == "transitional_package"
    assert (
        dt.package_skip_reason(package("a", "tool", "It can safely be removed."))
        == "transitional_package"
    )
    assert dt.package_skip_reason(package("a-dbgsym", "tool")) == "debug_symbols_package"
    assert dt.package_skip_reason(package("a", "debug symbols for a")) == "debug_symbols_package"
    assert dt.package_skip_reason(package("equivs", "create dummy packages")) is None
    assert dt.is_package_note("This package provides the Python 3 module.")
    assert not dt.is_package_note("This library provides the Python 3 module.")
    assert not dt.is_package_note("This package contains " + "many words " * 20)
    assert dt.is_catalogue_entry("placeins -- Control float placement")
    assert not dt.is_catalogue_entry("Placeins controls float placement -- and more.")


def test_release_path_and_read_release(lists_dir):
    assert debian_packages.release_path(f"/x/{PACKAGES}") == "main/binary-amd64/Packages"
    assert debian_packages.release_path(f"/x/{TRANSLATION}.xz") == "main/i18n/Translation-en"
    assert debian_packages.release_path("/x/my_Packages") is None
    info = debian_packages.read_release(os.path.join(lists_dir, RELEASE))
    assert info["Suite"] == "testing" and info["Codename"] == "example"
    assert info["sha256"]["main/i18n/Translation-en"] == "1" * 64


def test_compressed_lists_give_the_same_records(lists_dir, tmp_path):
    import gzip
    import lzma

    other = tmp_path / "compressed"
    other.mkdir()
    with open(os.path.join(lists_dir, PACKAGES), "rb") as f:
        (other / f"{PACKAGES}.gz").write_bytes(gzip.compress(f.read()))
    with open(os.path.join(lists_dir, TRANSLATION), "rb") as f:
        (other / f"{TRANSLATION}.xz").write_bytes(lzma.compress(f.read()))
    builder = dt.DebianTextBuilder(str(other))
    skipped = collections.Counter()
    assert list(builder.extract(builder.units()[0], skipped)) == EXPECTED
    assert builder.description()["releases"] == []


def test_pins_are_checked(lists_dir):
    good = {"main/binary-amd64/Packages": sha256(packages_bytes())}
    dt.DebianTextBuilder(lists_dir, expected_sha256=good)
    with pytest.raises(ValueError, match=r"main/binary-amd64/Packages has sha256 .*--unpinned"):
        dt.DebianTextBuilder(lists_dir, expected_sha256={"main/binary-amd64/Packages": "0" * 64})
    with pytest.raises(ValueError, match=r"main/binary-i386/Packages is missing"):
        dt.DebianTextBuilder(lists_dir, expected_sha256={"main/binary-i386/Packages": "0" * 64})


def test_missing_translation_file_is_a_clear_error(tmp_path):
    (tmp_path / PACKAGES).write_bytes(packages_bytes())
    with pytest.raises(FileNotFoundError, match="Translation-en"):
        dt.DebianTextBuilder(str(tmp_path))


def parse(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--out_dir", default="data/debian_text")
    dt.add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_offline_pinned_by_default(lists_dir, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError(f"unexpected subprocess: {args}")

    monkeypatch.setattr(subprocess, "run", no_network)
    # The default pins are bookworm's lists: the hand-written ones do not match them.
    with pytest.raises(ValueError, match="pinned list file"):
        dt.builder_from_args(parse(["--lists_dir", lists_dir]))
    builder = dt.builder_from_args(parse(["--lists_dir", lists_dir, "--unpinned"]))
    assert builder.expected_sha256 == {}
    pin = f"main/binary-amd64/Packages={sha256(packages_bytes())}"
    builder = dt.builder_from_args(parse(["--lists_dir", lists_dir, "--expect_sha256", pin]))
    assert builder.expected_sha256 == {"main/binary-amd64/Packages": sha256(packages_bytes())}
    with pytest.raises(SystemExit):
        parse(["--expect_sha256", "main/binary-amd64/Packages=xyz"])


def test_fetch_uses_matching_cached_lists_without_network(lists_dir, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    os.symlink(lists_dir, cache / "lists")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("apt-get was run"))
    pins = {"main/binary-amd64/Packages": sha256(packages_bytes())}
    assert debian_packages.fetch_lists(str(cache), expected=pins) == str(cache / "lists")


def test_fetch_runs_a_private_apt_get_update(tmp_path, monkeypatch):
    calls = []

    def fake_run(command, **kwargs):
        calls.append(command)
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    cache = str(tmp_path / "cache")
    mirror = "http://mirror.example/debian"
    lists = debian_packages.fetch_lists(cache, mirror=mirror, suite="bookworm")
    assert lists == os.path.join(cache, "lists")
    (command,) = calls
    assert command[:2] == ["apt-get", "update"]
    options = dict(c.split("=", 1) for c in command[command.index("-o") + 1 :: 2])
    assert options["Dir::State::Lists"] == lists
    assert options["Acquire::Languages"] == "en"
    assert options["Dir::Etc::SourceList"].startswith(cache)
    assert options["Dir::Etc::SourceParts"].startswith(cache)
    assert options["Dir::Cache"].startswith(cache)
    with open(options["Dir::Etc::SourceList"]) as f:
        assert f.read() == (
            f"deb [arch=amd64 signed-by={debian_packages.KEYRING}] {mirror} bookworm main\n"
        )

    def failing_run(command, **kwargs):
        return subprocess.CompletedProcess(command, 100, "", "E: Failed to fetch\n")

    monkeypatch.setattr(subprocess, "run", failing_run)
    with pytest.raises(RuntimeError, match="(?s)apt-get update failed .*Failed to fetch"):
        debian_packages.fetch_lists(cache)
