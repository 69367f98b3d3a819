"""People a reader follows ("author: Yann LeCun"), matched against the names papers list.

arXiv and Hugging Face write one person many ways: "Yann LeCun", "Y. LeCun", "LeCun, Yann",
surname first ("Leconte Jérémy", as arXiv's RSS sometimes has it), accents or not ("Jérémy",
"Jeremy"). So names are compared as sets of folded words, order free: the followed name's
surname (its last word, or what comes before a comma) must be one of the author's words, and
each of its given names must meet a different remaining word of the author's, in full or as
an initial ("Y." is "Yann", "J.-P." is "Jean-Pierre"). A followed name with no given name
matches every author of that surname. Middle names the follower left out do not matter.
Pure: names in, matches out.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# letters NFKD does not take apart into a base letter and an accent
_UNSPLIT = str.maketrans({"ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i"})
_LIGATURES = {"æ": "ae", "œ": "oe", "ß": "ss"}
_NAME_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


def fold(text: str) -> str:
    """Lower case without accents: "Jérémy Łukasz" -> "jeremy lukasz"."""
    lowered = text.casefold().translate(_UNSPLIT)
    for letter, spelled in _LIGATURES.items():
        lowered = lowered.replace(letter, spelled)
    decomposed = unicodedata.normalize("NFKD", lowered)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@dataclass(frozen=True)
class Name:
    """A followed name as words: its surname's words and its given names, folded."""

    surname: tuple[str, ...]
    given: tuple[str, ...]

    @classmethod
    def parse(cls, written: str) -> Name:
        """ "Yann LeCun", "Y. LeCun" and "LeCun, Yann" all give surname ("lecun",)."""
        if "," in written:
            last, _, first = written.partition(",")
            return cls(tuple(_words(last)), tuple(_words(first)))
        words = _words(written)
        return cls(tuple(words[-1:]), tuple(words[:-1]))

    def matches(self, author: str) -> bool:
        """Whether ``author`` (a name as a paper lists it) is this person."""
        if not self.surname:
            return False
        left = _words(author)
        for word in self.surname:
            if word not in left:
                return False
            left.remove(word)
        for given in self.given:
            meets = next((w for w in left if _compatible(given, w)), None)
            if meets is None:
                return False
            left.remove(meets)
        return True


def _words(name: str) -> list[str]:
    return _NAME_WORD.findall(fold(name))


def _compatible(given: str, word: str) -> bool:
    """The same given name, or an initial of it ("y" and "yann")."""
    if given == word:
        return True
    return (len(given) == 1 or len(word) == 1) and given[0] == word[0]


class AuthorIndex:
    """The day's papers by the words of their authors' names, so each followed name is
    checked only against the authors sharing its surname, however many papers there are."""

    def __init__(self, authors: Sequence[Sequence[str]]) -> None:
        self._by_word: dict[str, list[tuple[int, str]]] = {}
        for paper, names in enumerate(authors):
            for name in names:
                for word in set(_words(name)):
                    self._by_word.setdefault(word, []).append((paper, name))

    def papers_by(self, followed: str) -> dict[int, str]:
        """{paper: the author name as the paper writes it} for the papers ``followed`` wrote."""
        name = Name.parse(followed)
        if not name.surname:
            return {}
        found: dict[int, str] = {}
        for paper, author in self._by_word.get(name.surname[-1], ()):
            if paper not in found and name.matches(author):
                found[paper] = author
        return found


def display_name(followed: str, written: Iterable[str] = ()) -> str:
    """How a reason names the person: as the paper writes them in full ("Yann LeCun" for a
    follower who typed "Y. LeCun"), else as the reader typed it, "LeCun, Yann" turned round
    (title case if they typed it all in lower case)."""
    full = [w for w in written if all(len(part) > 1 for part in _NAME_WORD.findall(w))]
    if full:
        return full[0]
    name = " ".join(reversed([p.strip() for p in followed.split(",", 1)])).strip()
    return name.title() if name == name.lower() else name
