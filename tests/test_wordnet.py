"""WordNet (example -> definition) pairs: the data-file parser on real lines of WordNet 3.0,
malformed lines, and the builder end to end on a small fake `wordnet-base` package."""

import collections

import pytest

from cpt_jax import downloads
from cpt_jax.files import sha256_of
from data_pipelines import corpus, debian_packages, splits
from data_pipelines import wordnet as wn

# Real lines of WordNet 3.0 (wordnet-base 1:3.0-37), copied from its data files.
DOG = (
    "02084071 05 n 03 dog 0 domestic_dog 0 Canis_familiaris 0 023 @ 02083346 n 0000 @ 01317541 "
    "n 0000 #m 02083863 n 0000 #m 07994941 n 0000 ~ 01322604 n 0000 ~ 02084732 n 0000 ~ "
    "02084861 n 0000 ~ 02085272 n 0000 ~ 02085374 n 0000 ~ 02087122 n 0000 ~ 02103406 n 0000 ~ "
    "02110341 n 0000 ~ 02110806 n 0000 ~ 02110958 n 0000 ~ 02111129 n 0000 ~ 02111277 n 0000 ~ "
    "02111500 n 0000 ~ 02111626 n 0000 ~ 02112497 n 0000 ~ 02112826 n 0000 ~ 02113335 n 0000 ~ "
    "02113978 n 0000 %p 02158846 n 0000 | a member of the genus Canis (probably descended from "
    "the common wolf) that has been domesticated by man since prehistoric times; occurs in many "
    'breeds; "the dog barked all night"  '
)
ENTITY = (
    "00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 ~ 00002137 n 0000 ~ 04424418 n 0000 | "
    "that which is perceived or known or inferred to have its own distinct existence (living "
    "or nonliving)  "
)
CARROT = (
    '01219722 04 n 01 carrot 0 001 @ 01219551 n 0000 | promise of reward as in "carrot and '
    'stick"; "used the carrot of subsidized housing for the workers to get their vote";  '
)
BREATHE = (
    "00001740 29 v 04 breathe 0 take_a_breath 0 respire 0 suspire 3 021 * 00005041 v 0000 * "
    "00004227 v 0000 + 03110323 a 0301 + 00831191 n 0303 + 04080833 n 0301 + 04250850 n 0105 + "
    "00831191 n 0101 ^ 00004227 v 0103 ^ 00005041 v 0103 $ 00002325 v 0000 $ 00002573 v 0000 ~ "
    "00002573 v 0000 ~ 00002724 v 0000 ~ 00002942 v 0000 ~ 00003826 v 0000 ~ 00004032 v 0000 ~ "
    "00004227 v 0000 ~ 00005041 v 0000 ~ 00006697 v 0000 ~ 00007328 v 0000 ~ 00017031 v 0000 "
    '02 + 02 00 + 08 00 | draw air into, and expel out of, the lungs; "I can breathe better '
    'when the air is clean"; "The patient is respiring"  '
)
ABOUNDING = (
    "00014358 00 s 02 abounding 0 galore(ip) 0 001 & 00013887 a 0000 | existing in abundance; "
    '"abounding confidence"; "whiskey galore"  '
)
ACCORDANT = (
    "00552841 00 a 01 accordant 0 008 + 02700104 v 0104 + 07176804 n 0103 ! 00553899 a 0101 & "
    "00553140 a 0000 & 00553279 a 0000 & 00553478 a 0000 & 00553594 a 0000 & 00553732 a 0000 | "
    "being in agreement or harmony; often followed by `with'; \"a place perfectly accordant "
    "with man's nature\"-Thomas Hardy  "
)
AD = (
    "00001837 02 r 03 AD 0 A.D. 0 anno_Domini 0 000 | in the Christian era; used before dates "
    'after the supposed year Christ was born; "in AD 200"  '
)
LICENCE_HEADER = "  1 This software and database is being provided to you, the LICENSEE, by  "
# A real line whose gloss has an odd number of quotes, and a real such gloss (noun 08145553).
ENCLOSE = (
    "02711114 42 v 03 enclose 0 hold_in 0 confine 0 009 @ 02700867 v 0000 + 13998576 n 0301 + "
    "09273291 n 0101 + 03285912 n 0101 ~ 02710673 v 0000 ~ 02711375 v 0000 ~ 02711543 v 0000 ~ "
    '02711721 v 0000 ~ 02711835 v 0000 01 + 11 00 | close in; darkness enclosed him"  '
)
POST_OFFICE_GLOSS = 'a local branch where postal services are available"'


def test_parse_real_lines():
    assert wn.parse_data_line(DOG, "n") == wn.Synset(
        "n02084071",
        "noun.animal",
        ("dog", "domestic dog", "Canis familiaris"),
        "a member of the genus Canis (probably descended from the common wolf) that has been "
        "domesticated by man since prehistoric times; occurs in many breeds",
        ("the dog barked all night",),
    )
    assert wn.parse_data_line(ENTITY, "n") == wn.Synset(
        "n00001740",
        "noun.Tops",
        ("entity",),
        "that which is perceived or known or inferred to have its own distinct existence "
        "(living or nonliving)",
        (),
    )
    assert wn.parse_data_line(BREATHE, "v") == wn.Synset(
        "v00001740",
        "verb.body",
        ("breathe", "take a breath", "respire", "suspire"),
        "draw air into, and expel out of, the lungs",
        ("I can breathe better when the air is clean", "The patient is respiring"),
    )
    assert wn.parse_data_line(ABOUNDING, "a") == wn.Synset(
        "a00014358",
        "adj.all",
        ("abounding", "galore"),
        "existing in abundance",
        ("abounding confidence", "whiskey galore"),
    )
    accordant = wn.parse_data_line(ACCORDANT, "a")
    assert accordant.definition == "being in agreement or harmony; often followed by `with'"
    assert accordant.examples == ("a place perfectly accordant with man's nature",)
    ad = wn.parse_data_line(AD, "r")
    assert (ad.synset, ad.lexname, ad.words) == (
        "r00001837",
        "adv.all",
        ("AD", "A.D.", "anno Domini"),
    )
    assert ad.examples == ("in AD 200",)
    carrot = wn.parse_data_line(CARROT, "n")
    assert carrot.definition == 'promise of reward as in "carrot and stick"'
    assert carrot.examples == (
        "used the carrot of subsidized housing for the workers to get their vote",
    )


def test_parse_gloss_errors():
    with pytest.raises(wn.MalformedLine) as e:
        wn.parse_gloss(POST_OFFICE_GLOSS)
    assert e.value.reason == "unbalanced_quotes"
    with pytest.raises(wn.MalformedLine) as e:
        wn.parse_gloss('"only an example"')
    assert e.value.reason == "empty_definition"
    assert wn.parse_gloss('a; "x; y"; b') == ("a; b", ("x; y",))


@pytest.mark.parametrize(
    "pos, line",
    [
        ("n", "02084071 05 n 03 dog 0 domestic_dog 0 | no pointer count"),
        ("n", DOG.replace(" 023 @", " 024 @")),  # pointer count off by one
        ("n", DOG.replace(" | ", " ")),  # no gloss separator
        ("n", DOG.replace("02084071 05", "0208407x 05")),  # offset not numeric
        ("n", DOG.replace("02084071 05", "02084071 99")),  # no such lexicographer file
        ("n", DOG.replace(" n 03 dog", " v 03 dog")),  # a verb in the noun file
        ("n", "garbage"),
        ("v", BREATHE.replace(" 02 + 02 00", " 03 + 02 00")),  # frame count off
    ],
)
def test_malformed_lines_are_counted(pos, line):
    good = {"n": DOG, "v": BREATHE}[pos]
    skipped = collections.Counter()
    text = f"{LICENCE_HEADER}\n{line}\n\n{good}\n"
    assert list(wn.iter_synsets(text, pos, skipped)) == [wn.parse_data_line(good, pos)]
    assert skipped == {"malformed_line": 1}


def _fake_wordnet(tmp_path):
    """A `wordnet-base` .deb of a few real lines, in a cache directory, and its pin."""
    data = {
        "data.noun": [LICENCE_HEADER, DOG, ENTITY, CARROT, "garbage"],
        "data.verb": [BREATHE, ENCLOSE],
        "data.adj": [ABOUNDING, ACCORDANT],
        "data.adv": [AD],
    }
    files = {
        f"{wn.DATA_DIR}{name}": "\n".join(lines).encode() + b"\n" for name, lines in data.items()
    }
    files["usr/share/doc/wordnet-base/README"] = b"not data"
    deb = debian_packages.build_deb(files, str(tmp_path / "fake.deb"), "wordnet-base", "1:3.0-37")
    pin = downloads.PinnedDeb("wordnet-base", "1:3.0-37", sha256_of(deb))
    cache = tmp_path / "cache"
    cache.mkdir()
    (tmp_path / "fake.deb").rename(cache / pin.filename)
    return str(cache), pin


def test_builder_end_to_end(tmp_path, monkeypatch):
    cache, pin = _fake_wordnet(tmp_path)

    def no_apt(args, cwd=None):
        raise AssertionError(f"apt must not run when the cached .deb matches: {args}")

    monkeypatch.setattr(downloads, "run_tool", no_apt)
    builder = wn.WordNetBuilder(cache, pin=pin)
    out = str(tmp_path / "wordnet")
    manifest = corpus.build(builder, out, log=lambda *_: None)
    records = [r for split in manifest["counts"] for r in corpus.read_split(out, split)]
    got = sorted((r["synset"], r["label"], r["query"], r["words"]) for r in records)
    assert got == [
        ("a00014358", "adj.all", "abounding confidence", "abounding, galore"),
        ("a00014358", "adj.all", "whiskey galore", "abounding, galore"),
        ("a00552841", "adj.all", "a place perfectly accordant with man's nature", "accordant"),
        (
            "n01219722",
            "noun.act",
            "used the carrot of subsidized housing for the workers to get their vote",
            "carrot",
        ),
        (
            "n02084071",
            "noun.animal",
            "the dog barked all night",
            "dog, domestic dog, Canis familiaris",
        ),
        ("r00001837", "adv.all", "in AD 200", "AD, A.D., anno Domini"),
        (
            "v00001740",
            "verb.body",
            "I can breathe better when the air is clean",
            "breathe, take a breath, respire, suspire",
        ),
        (
            "v00001740",
            "verb.body",
            "The patient is respiring",
            "breathe, take a breath, respire, suspire",
        ),
    ]
    for r in records:
        assert builder.split(r) == splits.split_by_hash(r["synset"])
        assert (
            r["document"]
            == wn.parse_data_line(
                {
                    "a00014358": ABOUNDING,
                    "a00552841": ACCORDANT,
                    "n01219722": CARROT,
                    "n02084071": DOG,
                    "r00001837": AD,
                    "v00001740": BREATHE,
                }[r["synset"]],
                r["synset"][0],
            ).definition
        )
    assert manifest["skipped"] == {"malformed_line": 1, "no_example": 1, "unbalanced_quotes": 1}
    assert manifest["source"]["package"] == pin.describe()


def test_cli_flags_build_the_builder():
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--out_dir", default="data/wordnet")
    wn.add_arguments(parser)
    assert wn.builder_from_args(parser.parse_args([])).cache_dir == "data/wordnet/downloads"
    args = parser.parse_args(["--cache_dir", "/tmp/debs"])
    assert wn.builder_from_args(args).cache_dir == "/tmp/debs"
