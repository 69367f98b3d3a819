"""Email rendering: digest and confirmation emails as (subject, text, html). Pure: data in, strings out.

Each email is a template triple in ``templates/email/`` (``NAME-subject.txt``, ``NAME.txt``,
``NAME.html``), healthchecks-style. HTML autoescaping is always on: titles and abstracts
come from the internet.

CSS inlining (premailer) costs ~19 ms per email, so it runs once per *template*, at load
time: static ``{% include %}``s are expanded textually first so premailer sees the whole
document, then the inlined source is compiled by Jinja. Rules for templates, because
premailer rewrites what it parses: write URL attributes as ``{{x.url}}`` without spaces
(it would percent-encode them), never put Jinja inside a ``class`` attribute (the class
would no longer match its rule), and keep ``!important`` in ``@media`` rules (inlined
styles would win over them otherwise).

Two speed-ups, each with its readable reference beside it (docs/performance.md, "Fast paths"):
CSS inlined once per template instead of per email (:func:`render_email` against
:func:`render_email_reference`, which premailers each email), and paper cards rendered once per
process by ``{% cached %}`` (:class:`FragmentCacheExtension` against
:class:`UncachedExtension`, where the tag just renders its block).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from functools import cached_property, lru_cache
from operator import attrgetter
from pathlib import Path
from typing import Any

import premailer
from jinja2 import (
    BaseLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    nodes,
    select_autoescape,
)
from jinja2.ext import Extension
from jinja2.parser import Parser

from digest.announcements import date_label
from digest.sources import PaperRecord
from digest.text import SNIPPET_CHARS, snippet
from digest.wire import sent_size


def _templates_dir() -> Path:
    """Installed from a wheel, the templates sit inside the package; in a checkout (or an
    editable install) at the repository's top, where the project keeps them."""
    packaged = Path(__file__).resolve().parent / "templates"
    return packaged if packaged.is_dir() else packaged.parent.parent / "templates"


TEMPLATES_DIR = _templates_dir()
STATIC_INCLUDE = re.compile(r'{%-?\s*include\s+"([^"]+)"\s*-?%}')
CSS_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
CSS_LINE_WIDTH = 400
SUBJECT_TOPICS = 2  # named in the subject before "and 2 more"
# Gmail clips an HTML part past 102 KB, and the footer's unsubscribe and preferences links go
# with the rest: a digest's HTML part, as sent, stays under this many bytes.
HTML_BUDGET = 99_000  # bytes; under 100 KB with the part's headers
FULL_SNIPPETS = 5  # the best picks keep their abstract when a digest must be shortened
BRIEF_CHARS = 110  # what a shortened card keeps of its summary or abstract: about one line

logging.getLogger("CSSUTILS").setLevel(logging.CRITICAL)  # one warning per mso-* property otherwise
logging.getLogger("cssutils").setLevel(logging.CRITICAL)


@dataclass(frozen=True)
class PaperItem:
    """One paper as the email shows it: every label precomputed, since templates read them
    several times per paper and a card is rendered once for many subscribers."""

    arxiv_id: str
    title: str
    url: str  # the paper page: Hugging Face when the paper is there, else arXiv
    abs_url: str
    pdf_url: str
    hf_url: str | None
    authors: str  # "Ada Lovelace, Alan Turing, Grace Hopper et al."
    authors_count: str  # "12 authors", when the names above are not all of them
    organization: str
    ai_summary: str  # Hugging Face's one-line summary, when it has one
    snippet: str
    upvotes: int | None
    topic: str | None
    reason: str | None
    upvotes_label: str = ""  # "34 upvotes"; empty when there are none (never "0 upvotes")
    comments_label: str = ""  # "3 comments"
    code_url: str | None = None
    stars_label: str = ""  # "1.2k", the repository's GitHub stars
    project_url: str | None = None
    also: tuple[str, ...] = ()  # the subscriber's other topics it matches
    date: str = ""  # "Jul 30", or "from 2019" for an old paper (digest.announcements)

    def __hash__(self) -> int:
        """Computed once: the item is the key of its card in the fragment cache, looked up per email."""
        return self._hash

    @cached_property
    def _hash(self) -> int:
        return hash(_item_values(self))


_item_values = attrgetter(
    *(f.name for f in fields(PaperItem))
)  # astuple() would deep-copy every field


@dataclass(frozen=True)
class DigestContent:
    edition: dt.date
    recipient: str
    topics: tuple[str, ...]
    items: tuple[PaperItem, ...]
    trending: tuple[PaperItem, ...]
    preferences_url: str
    unsubscribe_url: str
    quiet_topics: tuple[str, ...] = ()  # "Nothing new on agents today"
    archive_url: str = ""  # this digest in a browser ("View in browser")
    # per item of ``items``: the page where the reader says "more / less like this". Kept
    # apart from the PaperItem, whose card is rendered once for every reader who gets it.
    vote_urls: tuple[str, ...] = ()
    title: str = "Paper Digest"  # the list's: the heading and the footer name it
    subject_title: str = ""  # the subject starts with it, when not empty


@dataclass(frozen=True)
class ConfirmationContent:
    recipient: str
    topics: tuple[str, ...]
    confirm_url: str
    expires_days: int
    title: str = "Paper Digest"  # the list's, which the mail is from
    cadence: str = "daily"  # the list's, in a sentence: "weekly, on Mondays"


@dataclass(frozen=True)
class AlreadySubscribedContent:
    """For a sign-up of an address that is already active or paused: a way in, not a change."""

    recipient: str
    topics: tuple[str, ...]
    preferences_url: str
    paused: bool
    title: str = "Paper Digest"  # the list's, which the mail is from


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def shorten_authors(authors: Sequence[str], keep: int = 3) -> str:
    """ "A, B, C et al." — enough to recognise a group without a wall of names."""
    if not authors:
        return ""
    shown = ", ".join(authors[:keep])
    return f"{shown} et al." if len(authors) > keep else shown


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def short_count(count: int) -> str:
    """1234 -> "1.2k": a star count is a rough signal, not a figure to read."""
    if count < 1000:
        return str(count)
    return f"{count / 1000:.1f}".rstrip("0").rstrip(".") + "k"


def paper_item(
    paper: PaperRecord,
    topic: str | None = None,
    reason: str | None = None,
    also: Sequence[str] = (),
    snippet_chars: int = SNIPPET_CHARS,
    edition: dt.date | None = None,
) -> PaperItem:
    """A paper as the email shows it; without a topic it is a "trending" entry. Its date is
    told against ``edition``, so an old paper says how old it is."""
    votes, comments, stars = paper.upvotes or 0, paper.num_comments or 0, paper.github_stars
    return PaperItem(
        arxiv_id=paper.arxiv_id,
        title=paper.title,
        url=paper.hf_url or paper.abs_url,
        abs_url=paper.abs_url,
        pdf_url=paper.pdf_url,
        hf_url=paper.hf_url,
        authors=shorten_authors(paper.authors),
        authors_count=plural(len(paper.authors), "author") if len(paper.authors) > 3 else "",
        organization=paper.organization or "",
        ai_summary=snippet(paper.ai_summary or "", snippet_chars),
        # with a summary above it, the abstract is a taste rather than the whole story
        snippet=snippet(
            paper.abstract or "", snippet_chars // 2 if paper.ai_summary else snippet_chars
        ),
        upvotes=paper.upvotes,
        topic=topic,
        reason=reason,
        upvotes_label=plural(votes, "upvote") if votes > 0 else "",
        comments_label=plural(comments, "comment") if comments > 0 else "",
        code_url=paper.github_repo,
        stars_label=short_count(stars) if stars else "",
        project_url=paper.project_page,
        also=tuple(also),
        date=date_label(paper.published_at, edition) if edition else "",
    )


def subject_topics(items: Sequence[PaperItem], topics: Sequence[str]) -> str:
    """The subscriber's topics that today's picks matched, in the subscriber's order, with
    their preposition: "on RL and agents", "on RL, agents and 1 more", "like “…”"."""
    picked = {item.topic for item in items} | {t for item in items for t in item.also}
    matched = [t for t in topics if t in picked] or list(topics)
    shown = [about(t) for t in matched[:SUBJECT_TOPICS]]
    shown = [shown[0], *(t.removeprefix("on ") for t in shown[1:])] if shown else shown
    if len(matched) <= SUBJECT_TOPICS:
        return " and ".join(shown)
    return f"{', '.join(shown)} and {len(matched) - SUBJECT_TOPICS} more"


def about(topic: str) -> str:
    """A topic label with the preposition it takes: "on RL"; a paper as a topic is shown as
    "like “…”" (:func:`digest.editions.topic_label`), which takes none."""
    return topic if topic.startswith("like ") else f"on {topic}"


def preheader(items: Sequence[PaperItem], trending: Sequence[PaperItem], topics: str) -> str:
    """The line an inbox shows after the subject: what is inside, not the header's text."""
    if items:
        return f"{plural(len(items), 'paper')} {topics}: {snippet(items[0].title, 90)}"
    if trending:
        return f"Nothing new on your topics today. Trending: {snippet(trending[0].title, 90)}"
    return "Nothing new on your topics today."


def expand_static_includes(source: str, read: Callable[[str], str]) -> str:
    """Replace ``{% include "x" %}`` by the text of x (recursively) so the inliner sees one
    document; a stylesheet goes in compacted."""

    def expand(match: re.Match[str]) -> str:
        name = match.group(1)
        text = expand_static_includes(read(name), read)
        return compact_css(text) if name.endswith(".css") else text

    return STATIC_INCLUDE.sub(expand, source)


def compact_css(css: str, width: int = CSS_LINE_WIDTH) -> str:
    """The stylesheet without comments or indentation, in lines of about ``width`` characters
    broken after a ``}``: the <style> block every email carries shrinks from ~45 lines to ~8,
    and every SMTP hop handles messages line by line."""
    lines: list[str] = []
    for piece in (
        " ".join(CSS_COMMENT.sub("", css).split())
        .replace("} ", "}")
        .replace("}", "}\n")
        .splitlines()
    ):
        if lines and len(lines[-1]) + len(piece) <= width:
            lines[-1] += piece
        else:
            lines.append(piece)
    return "\n".join(lines)


def inline_css(html: str) -> str:
    """premailer with the settings email clients need (see the module docstring)."""
    inlined: str = premailer.Premailer(
        html,
        keep_style_tags=True,
        strip_important=False,
        remove_classes=False,
        disable_validation=True,
        cssutils_logging_level=logging.CRITICAL,
        allow_network=False,
    ).transform(pretty_print=False)
    return inlined


class _ExpandedLoader(BaseLoader):
    """Loads email HTML templates with static includes expanded, optionally CSS-inlined."""

    def __init__(self, directory: Path, inline: bool) -> None:
        self.files = FileSystemLoader(str(directory))
        self.inline = inline

    def _read(self, environment: Environment, name: str) -> str:
        return self.files.get_source(environment, name)[0]

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool]]:
        source, filename, uptodate = self.files.get_source(environment, template)
        if template.startswith("email/") and template.endswith(".html"):
            source = expand_static_includes(source, lambda name: self._read(environment, name))
            if self.inline:
                source = _restore_jinja_in_urls(inline_css(source))
        return source, filename, uptodate


# An expression inside href/src after libxml2 percent-escaped it: spaces always become %20,
# and some versions escape the braces too.
_ESCAPED_EXPRESSION = re.compile(r"(?:\{\{|%7B%7B)(.*?)(?:\}\}|%7D%7D)")


def _restore_jinja_in_urls(html: str) -> str:
    """Undo libxml2's escaping within ``{{ }}``, so ``href="{{ url }}"`` stays an expression."""
    return _ESCAPED_EXPRESSION.sub(lambda m: "{{" + m.group(1).replace("%20", " ") + "}}", html)


class FragmentCache:
    """A bounded map from a fragment's key to its rendered text (Markup in HTML templates);
    the oldest entries go first."""

    def __init__(self, maxsize: int = 20_000) -> None:
        self.maxsize = maxsize
        self.fragments: dict[object, str] = {}

    def keep(self, fragment: str, key: object) -> str:
        if len(self.fragments) >= self.maxsize:
            self.fragments.pop(next(iter(self.fragments)), None)
        self.fragments[key] = fragment
        return fragment


class FragmentCacheExtension(Extension):
    """``{% cached "match", p %}...{% endcached %}``: render a block once per key.

    A paper card depends only on its PaperItem (paper, topic, reason), and at scale
    thousands of subscribers get the same cards, so each is rendered once per process.
    The tag compiles to a test, a filter and a captured ``set`` block, because Jinja
    calls those directly, while a ``{% call %}`` block pays for a macro and
    ``context.call`` on every card: about a fifth of the whole render.
    """

    tags = {"cached"}

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        cache = self.cache = FragmentCache()
        environment.tests["_in_fragment_cache"] = cache.fragments.__contains__
        environment.filters["_from_fragment_cache"] = cache.fragments.__getitem__
        environment.filters["_into_fragment_cache"] = cache.keep

    def parse(self, parser: Parser) -> nodes.Node:
        lineno, key, body = _parse_cached(parser)
        fragment = nodes.Name("_cached_fragment", "store")
        hit = nodes.Output([nodes.Filter(key, "_from_fragment_cache", [], [], None, None)])
        miss = [
            nodes.AssignBlock(
                fragment, nodes.Filter(None, "_into_fragment_cache", [key], [], None, None), body
            ),
            nodes.Output([nodes.Name("_cached_fragment", "load")]),
        ]
        is_cached = nodes.Test(key, "_in_fragment_cache", [], [], None, None)
        return nodes.If(is_cached, [hit], [], miss, lineno=lineno)


class UncachedExtension(Extension):
    """The reference for :class:`FragmentCacheExtension`: ``{% cached key %}`` renders its
    block every time, as if the tag were not there."""

    tags = {"cached"}

    def parse(self, parser: Parser) -> list[nodes.Node]:
        return _parse_cached(parser)[2]


def _parse_cached(parser: Parser) -> tuple[int, nodes.Tuple, list[nodes.Node]]:
    """``{% cached a, b %}body{% endcached %}`` as (line number, key (a, b), body)."""
    lineno = next(parser.stream).lineno
    parts = [parser.parse_expression()]
    while parser.stream.skip_if("comma"):
        parts.append(parser.parse_expression())
    body = parser.parse_statements(("name:endcached",), drop_needle=True)
    return lineno, nodes.Tuple(parts, "load"), body


def make_environment(directory: Path, inline: bool, fragment_cache: bool = True) -> Environment:
    """``inline``: CSS inlined into each template once, as it loads. ``fragment_cache``: paper
    cards rendered once per process. Both off is the reference the fast paths are checked against."""
    env = Environment(
        loader=_ExpandedLoader(directory, inline),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,  # templates do not change under a running process; saves a stat() per render
        extensions=[FragmentCacheExtension if fragment_cache else UncachedExtension],
    )
    # Email templates use none of Jinja's default globals (range, lipsum, namespace...), and
    # every render copies the globals into its context: about 8 % of a cached digest render.
    env.globals.clear()
    env.filters["about"] = about
    return env


@lru_cache(maxsize=4)
def default_environment(
    directory: Path = TEMPLATES_DIR, inline: bool = True, fragment_cache: bool = True
) -> Environment:
    """One environment (and so one inlining per template) per process."""
    return make_environment(directory, inline, fragment_cache)


def render_email(
    name: str, context: Mapping[str, Any], env: Environment | None = None
) -> RenderedEmail:
    """The fast path: templates inlined once, paper cards from the fragment cache."""
    env = env or default_environment()
    subject = " ".join(env.get_template(f"email/{name}-subject.txt").render(context).split())
    context = {**context, "subject": subject}
    return RenderedEmail(
        subject=subject,
        text=env.get_template(f"email/{name}.txt").render(context),
        html=env.get_template(f"email/{name}.html").render(context),
    )


def fit_digest(
    context: Mapping[str, Any], render: Callable[[Mapping[str, Any]], RenderedEmail]
) -> RenderedEmail:
    """The digest rendered whole if its HTML fits :data:`HTML_BUDGET`, else re-rendered tighter
    until it does: first the cards past the best :data:`FULL_SNIPPETS` keep one line of their
    abstract, then none, then the last cards give way to "N more papers in the browser".
    Measured, not estimated: at most a few renders, and only for the longest digests."""
    rendered = render(context)
    for shorten in (brief, bare):
        if sent_size(rendered.html) <= HTML_BUDGET:
            return rendered
        context = shortened_cards(context, shorten)
        rendered = render(context)
    size, previous = sent_size(rendered.html), None
    while size > HTML_BUDGET and len(context["cards"]) > 1 and context["archive_url"]:
        shown = len(context["cards"])
        keep = fewer_cards(shown, size, previous)
        previous = (shown, size)
        context = {
            **context,
            "cards": context["cards"][:keep],
            "more_papers": len(context["items"]) - keep,
        }
        rendered = render(context)
        size = sent_size(rendered.html)
    return rendered


def fewer_cards(shown: int, size: int, previous: tuple[int, int] | None) -> int:
    """How many cards to keep so the HTML fits: scaled by size at first, then by the bytes a
    card took between the last two renders; always at least one fewer, never none."""
    if previous is None or previous[0] == shown:
        guess = shown * HTML_BUDGET // size
    else:
        per_card = max((previous[1] - size) / (previous[0] - shown), 1.0)
        guess = shown - math.ceil((size - HTML_BUDGET) / per_card)
    return max(min(guess, shown - 1), 1)


def shortened_cards(
    context: Mapping[str, Any], shorten: Callable[[PaperItem], PaperItem]
) -> dict[str, Any]:
    """The best :data:`FULL_SNIPPETS` cards whole, the others shortened."""
    items = context["items"]
    return {**context, "cards": (*items[:FULL_SNIPPETS], *map(shorten, items[FULL_SNIPPETS:]))}


@lru_cache(maxsize=20_000)
def brief(item: PaperItem) -> PaperItem:
    """A shortened card: one line, from the summary when there is one. Cached like the cards it
    keys: thousands of readers get the same shortened card."""
    return replace(
        item, ai_summary="", snippet=snippet(item.ai_summary or item.snippet, BRIEF_CHARS)
    )


@lru_cache(maxsize=20_000)
def bare(item: PaperItem) -> PaperItem:
    """A card at its shortest: title, reason, authors and links, no summary or abstract."""
    return replace(item, ai_summary="", snippet="")


def render_email_reference(name: str, context: Mapping[str, Any]) -> RenderedEmail:
    """The readable reference for :func:`render_email`: every block rendered, then premailer
    on this one email. Same subject and text byte for byte; the same HTML element by element
    (premailer reserialises what it is given, so entities such as ``&#34;`` differ)."""
    rendered = render_email(name, context, default_environment(inline=False, fragment_cache=False))
    return replace(rendered, html=inline_css(rendered.html))


def digest_context(content: DigestContent) -> dict[str, Any]:
    topics = subject_topics(content.items, content.topics)
    return {
        **vars(content),  # shallow: asdict would deep-copy every item and double the cost
        "edition_label": f"{content.edition:%A, %B} {content.edition.day}, {content.edition.year}",
        "short_date": f"{content.edition:%b} {content.edition.day}",
        "subject_topics": topics,
        "preheader": preheader(content.items, content.trending, topics),
        "cards": content.items,  # what the HTML shows: fewer or shorter if it must fit
        "more_papers": 0,  # the picks the HTML left to the browser
    }


def confirmation_context(content: ConfirmationContent) -> dict[str, Any]:
    return {**vars(content), "preheader": "One click and your first digest is on its way."}


def already_subscribed_context(content: AlreadySubscribedContent) -> dict[str, Any]:
    return {**vars(content), "preheader": "Nothing was changed: here is your preferences link."}


def render_digest(content: DigestContent, env: Environment | None = None) -> RenderedEmail:
    """A digest's text without its envelope, as it is sent: the CLI's preview, screenshots, tests."""
    return fit_digest(digest_context(content), lambda context: render_email("digest", context, env))


def render_confirmation(content: ConfirmationContent) -> RenderedEmail:
    return render_email("confirm", confirmation_context(content))


def render_already_subscribed(content: AlreadySubscribedContent) -> RenderedEmail:
    return render_email("already-subscribed", already_subscribed_context(content))


def inline_per_email(content: DigestContent) -> str:
    """A digest's HTML by the reference path (the benchmark's and the tests' yardstick)."""
    return fit_digest(
        digest_context(content), lambda context: render_email_reference("digest", context)
    ).html
