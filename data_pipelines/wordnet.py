"""WordNet 3.0 as (example sentence -> definition) pairs, with the supersense as a label.

Source: Debian's `wordnet-base` package (pinned version and sha256, read without installing
it), whose `usr/share/wordnet/data.{noun,verb,adj,adv}` files hold one synset per line
(format: wndb(5WN)):

    offset lex_filenum ss_type w_cnt word lex_id [word lex_id...] p_cnt [pointer...]
        [f_cnt frame...] | gloss

The gloss is the definition followed by examples, separated by `;`; examples are the parts
in double quotes (`parse_gloss`). Every example of a synset is the query of one pair whose
document is the synset's definition:

    "the dog barked all night"  ->  "a member of the genus Canis (probably descended from the
    common wolf) that has been domesticated by man since prehistoric times; occurs in many
    breeds"

Records: `query` (the example), `document` (the definition), `label` (the lexicographer
file, i.e. the supersense: `noun.animal`, `verb.motion`, `adj.all`...), `synset` (the part
of speech letter and the offset, `n02084071`), `words` (the synset's lemmas, `dog, domestic
dog, Canis familiaris`), `source` (`wordnet-3.0`). Splits are by synset:
`int(sha1(synset).hexdigest(), 16) % 10` is 0 -> test, 1 -> validation, else train, so all
examples of one definition land in one split. Several examples share one definition, so
de-duplication is over the (example, definition) pair; in a batch they are false negatives
of each other, which the text ids (`document_id`) mask.

Skipped and counted: `no_example` (most synsets: 84,772 of 117,659 in WordNet 3.0),
`malformed_line` (fields that do not follow the format), `unbalanced_quotes` (an odd number
of `"` in the gloss: the examples cannot be told from the definition), `empty_definition`.
The licence header lines (starting with two spaces) are not synsets and are not counted.

CLI: `python -m data_pipelines.build wordnet` (writes `data/wordnet/`)
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from collections.abc import Iterator
from typing import NamedTuple

from cpt_jax import downloads
from data_pipelines import corpus, debian_packages, splits
from data_pipelines.text import normalise_whitespace

# Bump when the extraction's output changes: it fingerprints cached build units.
EXTRACTION_VERSION = 1

WORDNET = downloads.PinnedDeb(
    "wordnet-base",
    "1:3.0-37",
    "61060d960f9ada8fa120872312eccd3ecebfbab8c4579e4f5a74e1cf67620752",
)
DATA_DIR = "usr/share/wordnet/"
# Data file -> the part-of-speech letter of its synset ids (adjective satellites are `a`).
DATA_FILES = {"data.noun": "n", "data.verb": "v", "data.adj": "a", "data.adv": "r"}
# The synset types each file may hold (`s`: adjective satellite).
_SS_TYPES = {"n": "n", "v": "v", "a": "as", "r": "r"}
# lex_filenum -> lexicographer file name, from lexnames(5WN) of WordNet 3.0.
LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event",
    "noun.feeling", "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object",
    "noun.person", "noun.phenomenon", "noun.plant", "noun.possession", "noun.process",
    "noun.quantity", "noun.relation", "noun.shape", "noun.state", "noun.substance",
    "noun.time", "verb.body", "verb.change", "verb.cognition", "verb.communication",
    "verb.competition", "verb.consumption", "verb.contact", "verb.creation", "verb.emotion",
    "verb.motion", "verb.perception", "verb.possession", "verb.social", "verb.stative",
    "verb.weather", "adj.ppl",
)  # fmt: skip


class Synset(NamedTuple):
    """The parts of one data-file line that the corpus uses."""

    synset: str  # part-of-speech letter + 8-digit offset: "n02084071"
    lexname: str  # "noun.animal"
    words: tuple[str, ...]  # lemmas, underscores as spaces, adjective markers removed
    definition: str
    examples: tuple[str, ...]


class MalformedLine(ValueError):
    """A data-file line that cannot be parsed; `reason` is its skip counter."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _split_outside_quotes(text: str, separator: str = ";") -> list[str]:
    parts, current, quoted = [], [], False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def parse_gloss(gloss: str) -> tuple[str, tuple[str, ...]]:
    """`(definition, examples)` of a WordNet gloss.

    The gloss is split at the `;` that are outside double quotes. A part that starts with
    `"` is an example: the text between its first and last `"` (an attribution after the
    closing quote, `"..." - Thomas Hardy`, is dropped). The other parts, joined by `; `, are
    the definition (a quotation inside them, `as in "carrot and stick"`, stays there).

    Raises:
      MalformedLine: `unbalanced_quotes` (an odd number of `"`), `empty_definition`.
    """
    if gloss.count('"') % 2:
        raise MalformedLine("unbalanced_quotes", f"odd number of double quotes in {gloss!r}")
    definition, examples = [], []
    for part in _split_outside_quotes(gloss):
        if part.startswith('"'):
            example = normalise_whitespace(part[1 : part.rindex('"')])
            if example:
                examples.append(example)
        else:
            definition.append(part)
    if not definition:
        raise MalformedLine("empty_definition", f"no definition in {gloss!r}")
    return normalise_whitespace("; ".join(definition)), tuple(examples)


def _lemma(word: str) -> str:
    """`ready_to_hand(p)` -> `ready to hand`: adjective position markers dropped."""
    for marker in ("(a)", "(p)", "(ip)"):
        word = word.removesuffix(marker)
    return word.replace("_", " ")


def parse_data_line(line: str, pos: str) -> Synset:
    """The synset of one line of a WordNet data file of part of speech `pos` (n, v, a, r).

    Raises:
      MalformedLine: `malformed_line` when the fields do not follow wndb(5WN) (counts,
        offsets, the `|` before the gloss, the synset type of the file, the lexicographer
        file number); see `parse_gloss` for the gloss.
    """

    def bad(why: str) -> MalformedLine:
        return MalformedLine("malformed_line", f"{why}: {line[:120]!r}")

    head, separator, gloss = line.rstrip("\n").partition(" | ")
    if not separator:
        raise bad("no ' | ' before the gloss")
    fields = head.split()
    try:
        offset, lex_filenum, ss_type = fields[0], int(fields[1]), fields[2]
        w_cnt = int(fields[3], 16)
        words = fields[4 : 4 + 2 * w_cnt : 2]
        p_cnt = int(fields[4 + 2 * w_cnt])
        rest = fields[5 + 2 * w_cnt + 4 * p_cnt :]
        if pos == "v" and rest and len(rest) == 1 + 3 * int(rest[0]):
            rest = []  # f_cnt, then f_cnt frames "+ f_num w_num"
    except (IndexError, ValueError) as e:
        raise bad(f"bad field ({e})") from e
    if len(offset) != 8 or not offset.isdigit():
        raise bad("the offset is not 8 digits")
    if ss_type not in _SS_TYPES[pos]:
        raise bad(f"synset type {ss_type!r} in a file of part of speech {pos!r}")
    if not 0 <= lex_filenum < len(LEXNAMES):
        raise bad(f"unknown lexicographer file number {lex_filenum}")
    if w_cnt == 0 or len(words) != w_cnt or rest or len(fields) < 5 + 2 * w_cnt + 4 * p_cnt:
        raise bad("the word, pointer or frame counts do not match the fields")
    definition, examples = parse_gloss(gloss.strip())
    return Synset(
        f"{pos}{offset}",
        LEXNAMES[lex_filenum],
        tuple(_lemma(w) for w in words),
        definition,
        examples,
    )


def iter_synsets(text: str, pos: str, skipped: Counter) -> Iterator[Synset]:
    """The synsets of a data file's text; bad lines are counted in `skipped` by reason.

    Lines starting with two spaces (the licence header) and blank lines are not synsets.
    """
    for line in text.split("\n"):
        if not line.strip() or line.startswith("  "):
            continue
        try:
            yield parse_data_line(line, pos)
        except MalformedLine as e:
            skipped[e.reason] += 1


def synset_pairs(synset: Synset, skipped: Counter) -> Iterator[dict]:
    """The records of one synset: one per example (`no_example` counted when none)."""
    if not synset.examples:
        skipped["no_example"] += 1
        return
    for example in synset.examples:
        yield {
            "query": example,
            "document": synset.definition,
            "label": synset.lexname,
            "synset": synset.synset,
            "words": ", ".join(synset.words),
            "source": "wordnet-3.0",
        }


class WordNetBuilder(corpus.Builder):
    """(example -> definition) pairs of the pinned `wordnet-base`; one unit per data file."""

    name = "wordnet"

    def __init__(
        self,
        cache_dir: str = os.path.join("data", "wordnet", "downloads"),
        *,
        pin: downloads.PinnedDeb = WORDNET,
    ):
        self.cache_dir, self.pin = cache_dir, pin

    def units(self) -> list[corpus.Unit]:
        return [corpus.Unit(name, name) for name in DATA_FILES]

    def extract(self, unit: corpus.Unit, skipped: Counter) -> Iterator[dict]:
        deb = downloads.download_deb(self.pin, self.cache_dir)
        wanted = DATA_DIR + unit.payload
        for path, data in debian_packages.iter_deb_files(deb, wanted):
            if path != wanted:
                continue
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as e:  # WordNet 3.0 is ASCII: a corrupt file
                raise ValueError(f"{deb}: {path} is not UTF-8 ({e})") from e
            for synset in iter_synsets(text, DATA_FILES[unit.payload], skipped):
                yield from synset_pairs(synset, skipped)
            return
        raise FileNotFoundError(f"{deb}: no {wanted}")

    def split(self, record: dict) -> str:
        return splits.split_by_hash(record["synset"])

    def dedup_key(self, record: dict) -> str | None:
        # Examples of one synset share its definition: de-duplicate the pair, not the text.
        return f"{record['query']}\n{record['document']}"

    def description(self) -> dict:
        return {
            "package": self.pin.describe(),
            "extraction": EXTRACTION_VERSION,
            "files": [DATA_DIR + name for name in DATA_FILES],
            "pairs": "each quoted example of a gloss -> the gloss's definition",
            "label": "lexicographer file (supersense), lexnames(5WN)",
            "split_rule": splits.rule_text("synset"),
        }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the `wordnet` corpus."""
    parser.add_argument(
        "--cache_dir", default=None, help="where the .deb is kept (default: OUT_DIR/downloads)"
    )


def builder_from_args(args: argparse.Namespace) -> WordNetBuilder:
    """The `wordnet` builder of parsed flags."""
    return WordNetBuilder(args.cache_dir or os.path.join(args.out_dir, "downloads"))
