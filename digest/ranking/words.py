"""Words and phrases: how a topic and a paper are cut into the units they are matched on.

Two normalisations, for two jobs. The scores (BM25F) index Snowball stems: they only order
papers, and there the looser match measured better. Whether a paper's words let it pass for a
topic, and what a reason quotes, go by **phrases** of inflection-only words: lower case, a
possessive dropped, a plural made singular ("networks" -> "network", "LLMs" -> "llm",
"policies" -> "policy", "matrices" -> "matrix"). A plural or possessive is the same word by
definition, so this never joins two words a person would tell apart; a Snowball stem does:
"computability" and "computational" are both "comput", as are "generation" and "generative"'s
"gener" with "general". Derivations (-ation, -ity, -al) and verb forms are left apart: telling
"learning" (a field) from "learn" needs a dictionary this project does not carry; meaning
(MiniLM) covers those.

A topic of several words is a **phrase**: it is found in a paper as a unit, word after word,
allowing for the small words that join others ("mixture of experts", "LLM-based agents"), hyphens ("state-space models"), a
hyphen dropped ("pre-training" in "pretraining"), plurals, and acronyms: the long form of one
typed in the topic ("GNN"), the acronym a well-known long form goes by ("GNN" in a paper for
"graph neural networks"), and any acronym the paper itself defines ("lattice quantum
chromodynamics (LQCD)"). A topic that lists subjects ("speech and audio processing",
"robotics, control") is found when one of them is. A one-word topic is a phrase of one word:
"computability" is found where the paper says "computability", not "computational".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import Stemmer

STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "has",
        "have",
        "in",
        "into",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "their",
        "this",
        "to",
        "was",
        "were",
        "which",
        "with",
        "we",
        "our",
        "us",
        "via",
        "using",
        "use",
        "based",
        "towards",
        "toward",
        "new",
        "can",
        "these",
        "those",
        "than",
        "such",
        "both",
        "also",
        "while",
        "within",
        "without",
        "between",
        "across",
        "through",
        "over",
        "under",
        "more",
        "most",
        "less",
        "not",
        "no",
        "but",
        "each",
        "other",
        "how",
        "what",
        "when",
        "where",
        "who",
        "whose",
        "why",
        "do",
        "does",
    ]
)
WORD = re.compile(r"[a-z0-9]+")
POSSESSIVE = re.compile(r"['’]s\b")
HYPHENATED = re.compile(r"\b([a-z0-9]+)-([a-z0-9]+)\b")
LISTING = re.compile(r",|;|/|&|\band\b|\bor\b")  # what separates the subjects a topic lists
DEFINED = re.compile(r"\(([A-Za-z][A-Za-z0-9-]*[A-Z][A-Za-z0-9]*?)s?\)")  # "(LQCD)", "(GNNs)"
MIN_TABLE_ACRONYM = 3  # in a paper, "MT" may be "multi-target": only a defined one counts
ACRONYM_SPAN = 8  # words before a "(XY)" in which its long form is looked for
# Acronyms people type as topics, spelled out so papers that use the long form match too;
# a paper's own use of one counts for a topic spelled out only as a whole phrase.
ACRONYMS = {
    "ai": "artificial intelligence",
    "asr": "automatic speech recognition",
    "cnn": "convolutional neural network",
    "cv": "computer vision",
    "gan": "generative adversarial network",
    "gnn": "graph neural network",
    "gnns": "graph neural networks",
    "hci": "human computer interaction",
    "ir": "information retrieval",
    "llm": "large language model",
    "llms": "large language models",
    "ml": "machine learning",
    "moe": "mixture of experts",
    "mt": "machine translation",
    "nlp": "natural language processing",
    "nmt": "neural machine translation",
    "rag": "retrieval augmented generation",
    "rl": "reinforcement learning",
    "rlhf": "reinforcement learning from human feedback",
    "slam": "simultaneous localization and mapping",
    "tts": "text to speech",
    "vae": "variational autoencoder",
    "vlm": "vision language model",
    "vqa": "visual question answering",
    "ssm": "state space model",
    "nerf": "neural radiance field",
}
# Irregular plurals of the vocabulary papers use; the regular ones follow the rules below.
IRREGULAR = {
    "analyses": "analysis",
    "axes": "axis",
    "bases": "basis",
    "children": "child",
    "criteria": "criterion",
    "hypotheses": "hypothesis",
    "indices": "index",
    "matrices": "matrix",
    "phenomena": "phenomenon",
    "syntheses": "synthesis",
    "theses": "thesis",
    "vertices": "vertex",
    "caches": "cache",
    "series": "series",
    "species": "species",
}
# Words a phrase may have or lack in between ("mixture-of-experts", "LLM-based agents")
PHRASE_GAPS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "for",
        "in",
        "on",
        "to",
        "with",
        "and",
        "or",
        "by",
        "from",
        "at",
        "as",
        "into",
        "via",
        "based",
        "its",
        "their",
        "our",
    ]
)
_stemmer = Stemmer.Stemmer("english")
INVARIANT_ENDINGS = ("ss", "us", "is")  # "loss", "corpus", "analysis": not plurals


def singular(word: str) -> str:
    """The singular of an English plural, the word itself otherwise (lower case in)."""
    if word in IRREGULAR:
        return IRREGULAR[word]
    if len(word) <= 3 or not word.endswith("s") or word.endswith(INVARIANT_ENDINGS):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes", "zzes")):
        return word[:-2]
    return word[:-1]


def tokens(text: str) -> list[str]:
    """Every word of ``text`` in order, lower case, possessives dropped, stop words kept."""
    return WORD.findall(POSSESSIVE.sub("", text.lower()))


def words(text: str) -> list[str]:
    """The content words of ``text`` as written (stop words dropped)."""
    return [w for w in tokens(text) if w not in STOP_WORDS]


def stems(text: str) -> list[str]:
    """What the scores index: content words as Snowball stems. Looser than a phrase, so it
    only ranks; whether a paper passes on its words, and what a reason quotes, is decided by
    phrases (measured on the dev set: scoring plural-only words instead cost 0.03 nDCG@10
    with MiniLM and 0.065 by words alone, so the stems stay where they only order papers)."""
    stemmed: list[str] = _stemmer.stemWords(words(text))
    return stemmed


def phrase_words(text: str) -> list[str]:
    """The words a phrase is made of: every word but the few that join words without saying
    anything (:data:`PHRASE_GAPS`), each made singular. Wider than :func:`terms`, whose stop
    words include "use": "tool use" is two words, not "tool"."""
    return [singular(w) for w in tokens(text) if w not in PHRASE_GAPS]


def expand_acronyms(topic: str) -> str:
    """ "multilingual nlp" -> "multilingual nlp natural language processing"."""
    extra = [ACRONYMS[w] for w in WORD.findall(topic.lower()) if w in ACRONYMS]
    return " ".join([topic, *extra])


Phrase = tuple[str, ...]

# the long form of each acronym in the table, as terms: "graph neural network" -> "gnn"
_SHORT_FORM = {tuple(phrase_words(long)): singular(short) for short, long in ACRONYMS.items()}


def subjects(topic: str) -> list[str]:
    """The subjects a topic lists: "speech and audio processing" -> "speech", "audio
    processing"; a topic that lists nothing is one subject. A "and" inside a known long form
    ("research and development" is not in the table, so it splits) is not special-cased."""
    parts = [p.strip() for p in LISTING.split(topic.lower())]
    return [p for p in parts if phrase_words(p)] or [topic]


def topic_phrases(topic: str) -> list[Phrase]:
    """The units a topic is found by, as terms: each subject it lists, the long form of an
    acronym it is (or contains), and the table's acronym of a subject that is a long form."""
    found: list[Phrase] = []
    for subject in subjects(topic):
        phrase = tuple(phrase_words(subject))
        found.append(phrase)
        found.append(tuple(phrase_words(" ".join(ACRONYMS.get(w, w) for w in phrase))))
        if phrase in _SHORT_FORM and len(_SHORT_FORM[phrase]) >= MIN_TABLE_ACRONYM:
            found.append((_SHORT_FORM[phrase],))
    return list(dict.fromkeys(p for p in found if p))


def defined_acronyms(text: str) -> dict[str, Phrase]:
    """The acronyms a paper defines, as terms of their long form: "state space models (SSMs)"
    gives {"ssm": ("state", "space", "model")}. The long form is the shortest run of words
    just before the parenthesis whose initials spell the acronym (hyphens split words)."""
    found: dict[str, Phrase] = {}
    for match in DEFINED.finditer(text):
        letters = match.group(1).lower().replace("-", "")
        before = tokens(text[max(0, match.start() - 120) : match.start()])[-ACRONYM_SPAN:]
        for start in range(len(before) - 1, -1, -1):
            run = before[start:]
            spelled = (
                "".join(w[0] for w in run),
                "".join(w[0] for w in run if w not in PHRASE_GAPS),
            )
            if letters in spelled and run[0] not in PHRASE_GAPS:
                found[singular(letters)] = tuple(phrase_words(" ".join(run)))
                break
    return found


def phrase_terms(text: str, acronyms: dict[str, Phrase]) -> list[str]:
    """``text`` as the sequence phrases are looked for in: terms, with each acronym of
    ``acronyms`` (and of the table) followed by its long form, so "SSMs" reads as "ssm state
    space model" and "state space models" and "SSMs" both match either."""
    out: list[str] = []
    for term in phrase_words(text):
        out.append(term)
        long = acronyms.get(term)
        if long is None and term in ACRONYMS and len(term) >= MIN_TABLE_ACRONYM:
            long = tuple(phrase_words(ACRONYMS[term]))
        if long is not None:
            out += long
    return out


def joined_variants(sequence: Sequence[str]) -> set[str]:
    """Each pair of neighbouring terms written as one word ("pre", "training" ->
    "pretraining"), so a topic typed closed up matches a paper that hyphenates it."""
    return {a + b for a, b in zip(sequence, sequence[1:], strict=False)}


def contains(sequence: Sequence[str], phrase: Phrase) -> bool:
    """Whether ``phrase`` occurs in ``sequence`` word after word (a one-word phrase: at all)."""
    n = len(phrase)
    first = phrase[0]
    return any(
        sequence[i] == first and tuple(sequence[i : i + n]) == phrase
        for i in range(len(sequence) - n + 1)
    )


def found_in(sequence: Sequence[str], phrases: Iterable[Phrase]) -> Phrase | None:
    """The first of ``phrases`` in ``sequence`` (one field of a paper), also written closed
    up or hyphenated the other way: "pre-training" for "pretraining", and back."""
    joined: set[str] | None = None
    for phrase in phrases:
        if contains(sequence, phrase):
            return phrase
        if len(phrase) == 2 and "".join(phrase) in sequence:
            return phrase
        if len(phrase) == 1:
            joined = joined_variants(sequence) if joined is None else joined
            if phrase[0] in joined:
                return phrase
    return None
