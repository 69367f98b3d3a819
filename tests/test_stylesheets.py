"""The stylesheets hold nothing a browser would silently drop or misapply: tinycss2 parses
them as CSS, and a stray declaration, an unknown at-rule, an unclosed block, a rule nested
where it does not belong or a second rule quietly overriding the first fails here, in
milliseconds, before any browser test. A paste once left rule fragments inside both of
email.css's @media blocks and took dark mode's colours with them (#31)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import pytest
import tinycss2

from digest.rendering import TEMPLATES_DIR

EMAIL_CSS = TEMPLATES_DIR / "email" / "email.css"
STYLESHEETS = [EMAIL_CSS, TEMPLATES_DIR / "static" / "site.css"]
AT_RULES = {"media"}  # all the stylesheets need; anything else is a typo or a paste
# What a selector is made of here: names, classes, ids, pseudo-classes, attribute tests,
# combinators. A ';' or a brace in a prelude means a declaration or a '}' fell outside a block.
SELECTOR = re.compile(r"[\w\s.#:,>*+~()\[\]=\"'-]+")


def problems(css: str, inlined: bool = False) -> list[str]:
    """Everything wrong with ``css``, in words. ``inlined``: premailer inlines the plain
    rules into style attributes, so a declaration in @media needs !important to win."""
    found = []
    if tinycss2.serialize(tinycss2.parse_stylesheet(css)) != css:
        found.append("unbalanced braces: a block is never closed")
    found += _block_problems("top level", _rules(css), in_media=False)
    for rule in tinycss2.parse_stylesheet(css, skip_comments=True, skip_whitespace=True):
        if rule.type != "at-rule" or rule.lower_at_keyword not in AT_RULES:
            continue
        where = f"@{rule.at_keyword} {tinycss2.serialize(rule.prelude).strip()}"
        if rule.content is None:
            found.append(f"{where}: no block")
            continue
        nested = tinycss2.parse_rule_list(rule.content, skip_comments=True, skip_whitespace=True)
        found += _block_problems(where, nested, in_media=True, inlined=inlined)
    return found


def _rules(css: str) -> list:
    """The top level, without the @media blocks (checked each on its own)."""
    rules = tinycss2.parse_stylesheet(css, skip_comments=True, skip_whitespace=True)
    return [r for r in rules if not (r.type == "at-rule" and r.lower_at_keyword in AT_RULES)]


def _block_problems(
    where: str, rules: Iterable, in_media: bool, inlined: bool = False
) -> list[str]:
    """One block's rules (the top level or one @media): each well formed; within an @media,
    no selector given the same property twice (the later rule silently wins; at the top
    level a later, narrower rule overriding a shared one is ordinary cascade)."""
    found: list[str] = []
    seen: dict | None = {} if in_media else None
    for rule in rules:
        if rule.type == "error":
            found.append(f"{where}: {rule.message}")
        elif rule.type == "at-rule":
            found.append(f"{where}: @{rule.at_keyword} does not belong here")
        elif rule.type == "qualified-rule":
            found += _rule_problems(where, rule, seen, in_media and inlined)
    return found


def _rule_problems(where: str, rule, seen: dict | None, needs_important: bool) -> list[str]:
    selector = " ".join(tinycss2.serialize(rule.prelude).split())
    if not SELECTOR.fullmatch(selector):
        return [f"{where}: {selector!r} is not a selector (a declaration outside a block?)"]
    found = []
    items = tinycss2.parse_blocks_contents(rule.content, skip_comments=True, skip_whitespace=True)
    for item in items:
        if item.type == "error":
            found.append(f"{where}, {selector}: {item.message}")
        elif item.type != "declaration":
            found.append(f"{where}, {selector}: a rule nested inside a rule")
        elif not tinycss2.serialize(item.value).strip():
            found.append(f"{where}, {selector}: {item.name} has no value")
        else:
            if needs_important and not item.important:
                found.append(
                    f"{where}, {selector}: {item.name} without !important loses to the "
                    "inlined style"
                )
            for one in selector.split(",") if seen is not None else ():
                key = (one.strip(), item.lower_name)
                if key in seen:
                    found.append(
                        f"{where}: {key[0]} {{{item.name}}} again, overriding the rule "
                        f"{seen[key]!r}"
                    )
                seen[key] = selector
    return found


@pytest.mark.parametrize("path", STYLESHEETS, ids=lambda p: p.name)
def test_stylesheet_has_no_broken_rule(path: Path) -> None:
    found = problems(path.read_text(encoding="utf-8"), inlined=path == EMAIL_CSS)
    assert not found, f"{path.name}:\n  " + "\n  ".join(found)


@pytest.mark.parametrize(
    ("css", "says"),
    [
        (".a { color: red; }\ncolor: blue;\n.b { color: red; }", "is not a selector"),
        (".a { color: red; }}\n.b { color: red; }", "is not a selector"),
        (".a { color: red;\n.b { color: red; }", "unbalanced braces"),
        ("@mdia (max-width: 480px) { .a { color: red; } }", "@mdia does not belong here"),
        ("@media print { @media screen { .a { color: red; } } }", "@media does not belong"),
        ("@media print { .a { color: red; } color: red; }", "EOF reached before {} block"),
        (".a { color: red; .b { color: blue; } }", "a rule nested inside a rule"),
        (".a { color: ; }", "color has no value"),
        (
            "@media print { .a, .b { color: red; }\n.b { margin: 0; color: blue; } }",
            ".b {color} again, overriding the rule '.a, .b'",
        ),
    ],
)
def test_the_check_finds_each_kind_of_breakage(css: str, says: str) -> None:
    assert any(says in problem for problem in problems(css)), problems(css)


def test_an_email_rule_in_media_needs_important() -> None:
    css = "@media (prefers-color-scheme: dark) { .why { color: #9ca3af; } }"
    assert problems(css, inlined=True) == [
        "@media (prefers-color-scheme: dark), .why: color without !important loses to the "
        "inlined style"
    ]
    assert problems(css.replace(";", " !important;"), inlined=True) == []
