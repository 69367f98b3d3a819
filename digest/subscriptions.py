"""Subscriber input rules: email and topic normalisation, and CSV import parsing.

Pure functions on plain data. The CLI, the CSV importer and the web form all pass user
input through here, so one bad address is rejected the same way everywhere.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import unicodedata
import zoneinfo
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from email_validator import EmailNotValidError, validate_email

if TYPE_CHECKING:
    from _csv import Reader as csv_reader

SUBSCRIBER_STATUSES = ("pending", "active", "paused", "unsubscribed", "bounced")
OPTED_OUT = ("unsubscribed", "bounced")  # a record of consent withdrawn: never undone by an import
MAX_TOPICS = 5
MAX_TOPIC_LENGTH = 80
MIN_TOPIC_LENGTH = 2
MAX_PAPERS_LIMIT = 50
CSV_COLUMNS = ("email", "topics", "timezone", "send_hour", "max_papers", "status", "list")
REQUIRED_CSV_COLUMNS = ("email", "topics")
# A cell starting with one of these is a formula to a spreadsheet (OWASP, CSV injection)...
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
FORMULA_GUARD = "'"  # ... and text when this comes first


class InvalidInput(ValueError):
    """A user-facing validation error: its message is shown as is, on one line.

    ``field`` and ``plain`` are for the web form: which field it concerns, and the same
    problem in words for anyone ("Please enter a full email address, like ada@example.org")
    where the message itself is for an admin reading a CSV report."""

    def __init__(self, message: str, field: str | None = None, plain: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.plain = plain or message[:1].upper() + message[1:] + "."


@dataclass(frozen=True)
class SubscriberInput:
    """A validated subscriber as given by an admin, a CSV row or the web form."""

    email: str
    topics: tuple[str, ...]
    timezone: str | None = None
    send_hour: int | None = None
    max_papers: int | None = None
    status: str | None = None  # from an import file; None: active for a new subscriber
    list_slug: str | None = None  # from an import file's list column; None: the default list


@dataclass(frozen=True)
class Rejection:
    line: int
    reason: str


@dataclass
class ParsedCsv:
    rows: list[SubscriberInput] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    lines: int = 0


PLAIN_BAD_EMAIL = "Please enter a full email address, like ada@example.org."


def normalize_email(raw: str) -> str:
    """Validate syntax (IDN included) and return the one canonical form used as the key.

    Deliverability (DNS) is not checked: imports must work offline, and double opt-in is
    the real proof of a working mailbox. The whole address is lower-cased because every
    mainstream provider treats the local part case-insensitively and duplicates that
    differ only in case are far more common than mailboxes that rely on it.
    """
    candidate = (raw or "").strip()
    if not candidate:
        raise InvalidInput("email is empty", "email", "Please enter your email address.")
    try:
        result = validate_email(candidate, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidInput(
            f"invalid email {candidate!r}: {exc}", "email", PLAIN_BAD_EMAIL
        ) from None
    return result.normalized.lower()


GMAIL_DOMAINS = ("gmail.com", "googlemail.com")


def mailbox_of(email: str) -> str:
    """The mailbox an address delivers to, as the key of per-person limits (never to mail):
    ``Ada+news@Example.org`` and ``ada@example.org`` reach the same person, and so do
    ``a.d.a@googlemail.com`` and ``ada@gmail.com`` (Gmail ignores dots in the name)."""
    local, _, domain = email.casefold().rpartition("@")
    local = local.split("+", 1)[0]
    if domain in GMAIL_DOMAINS:
        return f"{local.replace('.', '')}@{GMAIL_DOMAINS[0]}"
    return f"{local}@{domain}"


def mail_domain_of(email: str) -> str:
    """The domain whose mail servers receive mail for ``email`` (googlemail.com is gmail.com)."""
    return mailbox_of(email).rpartition("@")[2]


_SPACES = re.compile(r"\s+")
# Two more kinds of topic, stored with a prefix: a subject kept out of the reader's picks, and a
# person whose papers they follow. Typed as "not: surveys" or "-surveys", "author: Yann LeCun".
EXCLUSION_PREFIX = "not: "
AUTHOR_PREFIX = "author: "
_TOPIC_KIND = re.compile(r"(?:(?P<not>not\s*:|-)|(?P<author>authors?\s*:))\s*", re.IGNORECASE)
# "More like this paper": a topic may name a paper by arXiv id or by its arXiv or Hugging Face
# page. It is stored as "arxiv:<id>"; ranking then uses the paper itself as the query.
PAPER_TOPIC_PREFIX = "arxiv:"
_PAPER_REFERENCE = re.compile(
    r"(?:arxiv:\s*|(?:https?://)?(?:www\.|export\.)?"
    r"(?:arxiv\.org/(?:abs|pdf)/|huggingface\.co/papers/))?"
    r"(\d{4}\.\d{4,5}|[a-z][a-z.\-]*/\d{7})(?:v\d+)?(?:\.pdf)?/?",
    re.IGNORECASE,
)


def paper_of_topic(topic: str) -> str | None:
    """The arXiv id a stored topic names ("arxiv:2607.07953" -> "2607.07953"), else None."""
    return topic[len(PAPER_TOPIC_PREFIX) :] if topic.startswith(PAPER_TOPIC_PREFIX) else None


def papers_of_topics(topics: Iterable[str]) -> set[str]:
    """The arXiv ids of the "more like this paper" topics among ``topics``."""
    return {pid for topic in topics if (pid := paper_of_topic(topic))}


def excluded_subject(topic: str) -> str | None:
    """What a stored exclusion keeps out ("not: surveys" -> "surveys"), else None."""
    return topic[len(EXCLUSION_PREFIX) :] if topic.startswith(EXCLUSION_PREFIX) else None


def followed_author(topic: str) -> str | None:
    """The person a stored author topic follows ("author: Yann LeCun" -> "Yann LeCun"), else None."""
    return topic[len(AUTHOR_PREFIX) :] if topic.startswith(AUTHOR_PREFIX) else None


def names_an_author(raw: str) -> bool:
    """Whether a topic as typed follows a person ("author: LeCun, Yann": its comma is the
    name's, where a form would otherwise take it for a second topic)."""
    kind = _TOPIC_KIND.match(raw.strip())
    return kind is not None and kind.group("author") is not None


def interest_topics(topics: Iterable[str]) -> list[str]:
    """The topics that say what a reader wants to read about: not the exclusions, not the
    people followed (those are shown and ranked apart)."""
    return [t for t in topics if excluded_subject(t) is None and followed_author(t) is None]


def normalize_topic(raw: str) -> str:
    """Collapse whitespace and lower-case, so "Graph  Neural Networks" == "graph neural networks";
    an arXiv id or paper URL becomes "arxiv:<id>" (any version: the paper is the same).
    ``not: surveys`` or ``-surveys`` becomes the exclusion "not: surveys"; ``author: Yann
    LeCun`` the author topic "author: Yann LeCun", the name's capitals kept, since a reason
    quotes it ("By Yann LeCun, whom you follow"). Every entry point (form, CLI, CSV import)
    reads topics through here, so the three kinds are written the same way everywhere."""
    text = (raw or "").strip()
    reference = _PAPER_REFERENCE.fullmatch(text)
    if reference:
        return PAPER_TOPIC_PREFIX + reference.group(1)
    kind = _TOPIC_KIND.match(text)
    if kind is None:
        return _plain_topic(raw, text)
    inner = text[kind.end() :]
    if kind.group("author"):
        return AUTHOR_PREFIX + _plain_topic(raw, inner, len(AUTHOR_PREFIX), lower=False)
    return EXCLUSION_PREFIX + _plain_topic(raw, inner, len(EXCLUSION_PREFIX))


def _plain_topic(raw: str, text: str, prefix: int = 0, lower: bool = True) -> str:
    """One topic's text, checked: length (the stored topic, ``prefix`` characters more, fits
    the column), no ';' (the CSV separator), nothing invisible."""
    topic = _SPACES.sub(" ", text)
    topic = topic.lower() if lower else topic
    if len(topic) < MIN_TOPIC_LENGTH:
        raise InvalidInput(
            f"topic {raw!r} is too short (at least {MIN_TOPIC_LENGTH} characters)",
            "topics",
            f"“{raw.strip()}” is too short: a topic needs at least {MIN_TOPIC_LENGTH} letters.",
        )
    if len(topic) + prefix > MAX_TOPIC_LENGTH:
        longest = MAX_TOPIC_LENGTH - prefix
        raise InvalidInput(
            f"topic {topic[:30]!r}... is longer than {longest} characters",
            "topics",
            f"“{topic[:30]}…” is too long: keep each topic under {longest} characters.",
        )
    if ";" in topic:
        raise InvalidInput(
            f"topic {topic!r} contains ';', which separates topics in CSV files",
            "topics",
            "Please put each topic on its own line, without ';'.",
        )
    hidden = {"Cc": "a control character", "Cf": "an invisible character (zero-width or format)"}
    for category, what in hidden.items():
        if any(unicodedata.category(ch) == category for ch in topic):
            raise InvalidInput(
                f"topic {topic!r} contains {what}",
                "topics",
                "A topic holds an invisible character (pasted from elsewhere?): please retype it.",
            )
    return topic


def normalize_topics(raw_topics: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Normalise, drop duplicates (keeping order) and enforce 1..MAX_TOPICS topics.

    Stops at the first topic past the limit, so a request with thousands of them costs no
    more than one with six."""
    topics: dict[str, str] = {}  # by casefold: "author: yann lecun" is "author: Yann LeCun"
    for raw in raw_topics:
        if not raw or not raw.strip():
            continue
        topic = normalize_topic(raw)
        topics.setdefault(topic.casefold(), topic)
        if len(topics) > MAX_TOPICS:
            raise InvalidInput(
                f"more than {MAX_TOPICS} topics given, at most {MAX_TOPICS} are allowed",
                "topics",
                f"Please keep to {MAX_TOPICS} topics at most.",
            )
    if not topics:
        raise InvalidInput(
            "at least one topic is required", "topics", "Please add at least one topic."
        )
    if not interest_topics(topics.values()) and not any(map(followed_author, topics.values())):
        raise InvalidInput(
            "only exclusions given: add a topic or an author to follow",
            "topics",
            "Please add a topic to follow: “not: …” only keeps papers out.",
        )
    return tuple(topics.values())


def validate_timezone(raw: str) -> str:
    name = raw.strip()
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"unknown time zone {name!r} (use an IANA name like Europe/Paris)",
            "timezone",
            "Please pick a time zone from the list, like Europe/Paris.",
        ) from None
    return name


def _whole_number(raw: int | str, low: int, high: int, what: str) -> int:
    """``what`` names the value in messages; with "_" for spaces, it is the form field."""
    plain = f"Please enter a whole number from {low} to {high}."
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise InvalidInput(
            f"{what} {raw!r} is not a whole number {low}-{high}", what.replace(" ", "_"), plain
        ) from None
    if not low <= value <= high:
        raise InvalidInput(f"{what} {value} is outside {low}-{high}", what.replace(" ", "_"), plain)
    return value


def validate_send_hour(raw: int | str) -> int:
    return _whole_number(raw, 0, 23, "send hour")


def validate_max_papers(raw: int | str) -> int:
    return _whole_number(raw, 1, MAX_PAPERS_LIMIT, "max papers")


def build_subscriber_input(
    email: str,
    topics: list[str] | tuple[str, ...],
    timezone: str | None = None,
    send_hour: int | str | None = None,
    max_papers: int | str | None = None,
    status: str | None = None,
    list_slug: str | None = None,
) -> SubscriberInput:
    """Validate every field; blank optional fields mean "use the default"."""
    return SubscriberInput(
        email=normalize_email(email),
        topics=normalize_topics(topics),
        timezone=validate_timezone(timezone) if timezone not in (None, "") else None,
        send_hour=validate_send_hour(send_hour) if send_hour not in (None, "") else None,
        max_papers=validate_max_papers(max_papers) if max_papers not in (None, "") else None,
        status=validate_status(status) if status not in (None, "") else None,
        list_slug=validate_slug(list_slug) if list_slug not in (None, "") else None,
    )


SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")


def validate_slug(raw: str) -> str:
    """A list's slug: its address (/l/SLUG) and its List-Id, so lower-case letters, digits
    and inner hyphens, at most 40."""
    slug = raw.strip().lower()
    if not SLUG.match(slug):
        raise InvalidInput(
            f"{raw!r} is not a list slug: lower-case letters, digits and hyphens, "
            "at most 40, like ml-weekly"
        )
    return slug


def validate_status(raw: str) -> str:
    status = raw.strip().lower()
    if status not in SUBSCRIBER_STATUSES:
        raise InvalidInput(f"unknown status {raw!r} (one of {', '.join(SUBSCRIBER_STATUSES)})")
    return status


def parse_subscriber_csv(text: str) -> ParsedCsv:
    """Parse an import file into valid rows and per-line rejections.

    Tolerates a UTF-8 BOM, Windows line endings and blank lines. A later row for an email
    already seen in the file is rejected as a duplicate, naming the first line, so the
    report is exact and importing the file twice gives the same result.
    """
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    header = _checked_header(next(reader, []))
    parsed = ParsedCsv()
    first_line_of: dict[str, int] = {}  # a subscription: an address on a list
    for line, record in _records_by_first_line(reader, header):
        parsed.lines += 1
        values = {
            key: unguarded_cell((value or "").strip())
            for key, value in record.items()
            if key in CSV_COLUMNS
        }
        if not any(values.values()):
            continue  # blank line, or only separators
        if None in record:
            parsed.rejections.append(Rejection(line, "more fields than the header has columns"))
            continue
        try:
            row = build_subscriber_input(
                values.get("email", ""),
                values.get("topics", "").split(";"),
                values.get("timezone"),
                values.get("send_hour"),
                values.get("max_papers"),
                values.get("status"),
                values.get("list"),
            )
        except InvalidInput as exc:
            parsed.rejections.append(Rejection(line, str(exc)))
            continue
        key = f"{row.email} on {row.list_slug}" if row.list_slug else row.email
        if key in first_line_of:
            parsed.rejections.append(
                Rejection(line, f"duplicate of line {first_line_of[key]} ({key})")
            )
            continue
        first_line_of[key] = line
        parsed.rows.append(row)
    return parsed


def _checked_header(fields: list[str]) -> list[str]:
    header = [name.strip().lower() for name in fields]
    for name in header:
        if name and header.count(name) > 1:
            raise InvalidInput(f"the CSV header names the column {name!r} twice")
    missing = [col for col in REQUIRED_CSV_COLUMNS if col not in header]
    if missing and len(header) == 1 and ";" in header[0]:
        raise InvalidInput(
            "the columns seem separated by ';' (as some spreadsheet programs export): "
            "save the file as CSV with commas, or UTF-8 CSV"
        )
    if missing:
        raise InvalidInput(
            f"CSV header must name the columns {', '.join(REQUIRED_CSV_COLUMNS)} "
            f"(found: {', '.join(header) or 'nothing'})"
        )
    return header


def _records_by_first_line(
    reader: csv_reader, header: list[str]
) -> Iterator[tuple[int, dict[str | None, Any]]]:
    """Each record as {column: value} (extra fields under None), with the line it starts
    on: a quoted field may span lines, and the reader counts the line it ends on. Blank
    lines are skipped; a field past the csv module's size limit is a clear error."""
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InvalidInput(f"line {start}: {exc}") from None
        if not row:
            continue
        record: dict[str | None, Any] = dict(zip(header, row, strict=False))
        if len(row) > len(header):
            record[None] = row[len(header) :]
        yield start, record


def format_subscriber_csv(rows: list[dict[str, object]]) -> str:
    """The export format, the same columns the importer reads (round-trips). Topics and
    addresses come from the public form: each cell is :func:`guarded_cell`."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        cells = {**row, "topics": ";".join(row["topics"])}  # type: ignore[arg-type]  # a list of str
        writer.writerow({name: guarded_cell(str(value)) for name, value in cells.items()})
    return out.getvalue()


def guarded_cell(cell: str) -> str:
    """``=HYPERLINK(...)`` exported as ``'=HYPERLINK(...)``: a spreadsheet shows it as text
    instead of running it. A cell starting with the guard before a formula character (or
    another guard) gets one more, so the import gives back exactly what was exported."""
    needs_guard = cell[:1] in FORMULA_STARTS or unguarded_cell(cell) != cell
    return FORMULA_GUARD + cell if needs_guard else cell


def unguarded_cell(cell: str) -> str:
    """The cell as it was before :func:`guarded_cell`. A quote a person wrote before plain
    text ("'rl") is theirs and stays."""
    if cell.startswith(FORMULA_GUARD) and cell[1:2] in (*FORMULA_STARTS, FORMULA_GUARD):
        return cell[1:]
    return cell


def first_digest_time(now: dt.datetime, timezone: str, send_hour: int) -> str:
    """When someone confirmed at ``now`` (naive UTC) gets their first digest, as the page says
    it: "today, Thursday 26 November, at 07:00 Europe/London". Past today's send hour the
    daily run sends them today's edition at its next tick, minutes away."""
    local = now.replace(tzinfo=dt.UTC).astimezone(zoneinfo.ZoneInfo(timezone))
    at = f"at {send_hour:02d}:00 {timezone}"
    if local.hour < send_hour:
        return f"today, {local:%A} {local.day} {local:%B}, {at}"
    tomorrow = local + dt.timedelta(days=1)
    return (
        f"within minutes (today's edition), then from tomorrow, {tomorrow:%A} {tomorrow.day} "
        f"{tomorrow:%B}, every day {at}"
    )


SUGGESTED_FROM_FOLLOWERS = 12  # at most this many followed topics beside the curated list


def suggested_topics(
    curated: Sequence[str], counts: Sequence[tuple[str, int]], min_followers: int
) -> list[str]:
    """The topic chips a public page offers: followed topics first (most followed), then the
    curated list. A followed topic is shown only once ``min_followers`` people follow it,
    and never a paper id, an author or an exclusion: one person's free text, the paper they
    read, the people they follow and what they skip are theirs alone."""
    followed = [
        name
        for name, followers in counts
        if followers >= min_followers and paper_of_topic(name) is None and interest_topics([name])
    ]
    return list(dict.fromkeys([*followed[:SUGGESTED_FROM_FOLLOWERS], *curated]))
