"""Fetch -> parse -> merge into storage, one source at a time, each failure contained.

A source that is down, slow or returns garbage yields a report with its error; the other
sources still land and nothing already stored is touched.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Protocol
from urllib.parse import urlencode

import numpy as np

from digest.fetching import Fetcher, FetchError
from digest.records import ChangeReport
from digest.settings import Settings
from digest.sources import (
    ARXIV_API,
    ARXIV_RSS,
    HF,
    PaperRecord,
    ParseResult,
    SourceError,
    parse_response,
)
from digest.subscriptions import InvalidInput, papers_of_topics

log = logging.getLogger(__name__)

MAX_REASON_CHARS = 200
LIVE_SOURCES = (HF, ARXIV_RSS, ARXIV_API)
SAMPLE_PACKAGE = "digest.sample_data"
SAMPLE_LABEL = "sample:"  # the bundled papers' reports: no live source
SAMPLE_VECTORS = "minilm_vectors.npz"  # their MiniLM vectors, made by scripts/sample_vectors.py


class PaperStore(Protocol):
    """Where fetched papers land (:class:`digest.storage.Papers`): merged in, looked up, and
    each feed's HTTP validators for the next conditional GET."""

    def upsert(self, records: Sequence[PaperRecord], as_news: bool = True) -> ChangeReport: ...

    def find(self, *, ids: Sequence[str] | None = None) -> list[PaperRecord]: ...

    def http_validators(self, url: str) -> tuple[str | None, str | None]: ...

    def save_http_validators(
        self, url: str, etag: str | None, last_modified: str | None
    ) -> None: ...


class SampleStore(PaperStore, Protocol):
    """Where the bundled sample lands: its papers, and their precomputed vectors."""

    def save_vectors(self, vectors: dict[str, bytes]) -> None: ...


@dataclass
class SourceReport:
    """What one source contributed to a run: the per-source line of ``digest fetch``."""

    source: str
    fetched: int = 0
    new: int = 0
    updated: int = 0
    skipped: int = 0
    error: str | None = None
    not_modified: bool = False
    url: str = ""
    http_status: int | None = None
    seconds: float = 0.0  # the request and the merge

    def summary(self) -> str:
        if self.error:
            return f"{self.source:<10} ERROR {self.error}"
        if self.not_modified:
            return f"{self.source:<10} not modified since the last fetch"
        return (
            f"{self.source:<10} fetched {self.fetched}, new {self.new}, updated {self.updated}, "
            f"skipped {self.skipped}"
        )


def source_url(
    settings: Settings,
    source: str,
    date: dt.date | None,
    categories: list[str],
    query: str | None = None,
) -> str:
    """The request URL of a live source for a day (None = the latest) and arXiv categories;
    ``query``: an arXiv API search of a list's instead of the categories."""
    if source == HF:
        return settings.hf_api_url + (f"?date={date.isoformat()}" if date else "")
    if source == ARXIV_RSS:
        return f"{settings.arxiv_rss_url}/{'+'.join(categories)}"
    if source == ARXIV_API:
        search = query or " OR ".join(f"cat:{c}" for c in categories)
        if date:
            day = date.strftime("%Y%m%d")
            search = f"({search}) AND submittedDate:[{day}0000 TO {day}2359]"
        params = {
            "search_query": search,
            "sortBy": "submittedDate",
            "sortOrder": "descending",
            "start": 0,
            "max_results": settings.arxiv_api_max_results,
        }
        return f"{settings.arxiv_api_url}?{urlencode(params)}"
    raise SourceError(f"unknown source {source!r}; expected one of {', '.join(LIVE_SOURCES)}")


def keep_announced(
    records: list[PaperRecord], announce_types: frozenset[str]
) -> tuple[list[PaperRecord], int]:
    """Drop feed items whose announce type is not wanted (by default: replacements)."""
    kept = [r for r in records if r.announce_type is None or r.announce_type in announce_types]
    return kept, len(records) - len(kept)


def store_parsed(
    stored: PaperStore,
    report: SourceReport,
    parsed: ParseResult,
    announce_types: frozenset[str],
    label: str | None = None,
) -> None:
    """Merge parsed papers in; ``label``: a list's source (an arXiv query) to record in each
    paper's sources, which is how that list finds its papers (:func:`digest.lists.from_sources`)."""
    papers, unwanted = keep_announced(parsed.papers, announce_types)
    if label:
        papers = [dataclasses.replace(p, sources=[*p.sources, label]) for p in papers]
    upsert = stored.upsert(papers)
    report.fetched = len(parsed.papers) + len(parsed.skipped)
    report.skipped = len(parsed.skipped) + unwanted
    report.new, report.updated = upsert.created, upsert.updated


@contextmanager
def reported(report: SourceReport) -> Iterator[None]:
    """Whatever goes wrong with one source becomes that source's error, so the next source
    and the rest of the run go on. Its own trouble (unreachable, garbage) is expected; any
    other failure, storing its papers included, is logged with its traceback and reported
    by its first line: a database error's text would hold the SQL and every paper."""
    try:
        yield
    except (FetchError, SourceError) as exc:
        report.error = str(exc)  # logged once, with the source's summary line
    except Exception as exc:  # noqa: BLE001 - one source's data must not stop the daily run
        log.exception("%s: could not store its papers", report.source)
        cause = str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""]
        reason = f"{type(exc).__name__}: {cause[0]}"[:MAX_REASON_CHARS]
        report.error = f"could not store its papers ({reason})"


def ingest_bytes(
    stored: PaperStore,
    body: bytes,
    label: str,
    announce_types: frozenset[str],
    source: str | None = None,
) -> SourceReport:
    """Parse a response (format detected unless forced) and merge it; errors go in the report."""
    report = SourceReport(source=label)
    with reported(report):
        store_parsed(stored, report, parse_response(body, source), announce_types)
    return report


def fetch_source(
    stored: PaperStore,
    fetcher: Fetcher,
    settings: Settings,
    source: str,
    date: dt.date | None,
    categories: list[str],
    query: str | None = None,
) -> SourceReport:
    """One live source end to end, with conditional GET; never raises for source trouble.
    ``query``: a list's ``arxiv-query:...`` source, fetched through the arXiv API."""
    report = SourceReport(source=query or source)
    started = time.monotonic()
    with reported(report):
        search = query.split(":", 1)[1] if query else None
        report.url = url = source_url(settings, source, date, categories, search)
        etag, modified = stored.http_validators(url)
        result = fetcher.get(url, etag, modified)
        report.http_status = result.status
        if result.not_modified:
            report.not_modified = True
            return _done(report, started)
        if result.status >= 400:
            raise SourceError(_http_error_reason(result.status, result.body, source))
        parsed = parse_response(result.body, source)
        store_parsed(stored, report, parsed, settings.announce_types, query)
        stored.save_http_validators(url, result.etag, result.last_modified)
    return _done(report, started)


def _done(report: SourceReport, started: float) -> SourceReport:
    """Time the fetch; its one log line, error included (nothing else logs it)."""
    report.seconds = time.monotonic() - started
    log.info("%s (%.2f s)", report.summary(), report.seconds)
    return report


def _http_error_reason(status: int, body: bytes, source: str) -> str:
    """HTTP status plus the API's own explanation when the body carries one (arXiv's 400s do)."""
    try:
        parse_response(body, source)
    except SourceError as exc:
        return f"HTTP {status}: {exc}"
    return f"HTTP {status}"


def fetch_all(
    stored: PaperStore,
    settings: Settings,
    sources: tuple[str, ...] = LIVE_SOURCES,
    date: dt.date | None = None,
    categories: list[str] | None = None,
    fetcher: Fetcher | None = None,
    queries: Sequence[str] = (),
) -> list[SourceReport]:
    """Fetch every requested source in turn, then each list's arXiv query (``queries``,
    as ``arxiv-query:...``); one failing source never stops the others."""
    owned = fetcher is None
    fetcher = fetcher or Fetcher(timeout=settings.http_timeout)
    wanted = categories or settings.category_list
    try:
        return [
            *(fetch_source(stored, fetcher, settings, s, date, wanted) for s in sources),
            *(fetch_source(stored, fetcher, settings, ARXIV_API, date, wanted, q) for q in queries),
        ]
    finally:
        if owned:
            fetcher.close()


def ingest_bundled_sample(
    stored: SampleStore, announce_types: frozenset[str]
) -> list[SourceReport]:
    """Load the real recorded responses shipped in the package: the offline demo's papers,
    with their vectors, so the first run ranks them without embedding them."""
    install_sample_vectors(stored)
    reports = []
    for item in sorted(resources.files(SAMPLE_PACKAGE).iterdir(), key=lambda f: f.name):
        if item.name.endswith((".json", ".xml")):
            reports.append(
                ingest_bytes(
                    stored, item.read_bytes(), f"{SAMPLE_LABEL}{item.name}", announce_types
                )
            )
    return reports


def install_sample_vectors(stored: SampleStore) -> int:
    """The sample papers' MiniLM vectors into the text vectors table, keyed as
    :class:`digest.semantic.StoredEncoder` looks them up: embedding the sample's ~70 papers
    made the first ``run --now`` sit silent for 30-60 s. Shipped as float16 (a quarter of
    the size), so each is made unit length again. Returns how many were installed."""
    shipped = resources.files(SAMPLE_PACKAGE) / SAMPLE_VECTORS
    if not shipped.is_file():
        return 0
    with shipped.open("rb") as file, np.load(file) as saved:
        keys, vectors = saved["keys"], saved["vectors"].astype("<f4")
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    stored.save_vectors({str(k): v.tobytes() for k, v in zip(keys, vectors, strict=True)})
    return len(keys)


def look_up_papers(
    stored: PaperStore, settings: Settings, ids: set[str], fetcher: Fetcher | None = None
) -> set[str]:
    """Store the papers that "more like this paper" topics name, fetching the unknown ones
    from the arXiv API by id. Returns the ids arXiv does not have; raises InvalidInput when
    arXiv cannot be asked (offline, down), naming the papers that could not be checked.

    A looked-up paper is stored as first seen when it was published: an old paper a reader
    names is not news for everyone else."""
    missing = ids - {p.arxiv_id for p in stored.find(ids=sorted(ids))} if ids else set()
    if not missing:
        return set()
    named = ", ".join(sorted(missing))
    if settings.offline:
        raise InvalidInput(
            f"paper {named} is not stored here and DIGEST_OFFLINE forbids looking it up on arXiv",
            "topics",
            f"We do not know paper {named} yet and cannot look it up right now.",
        )
    params = {"id_list": ",".join(sorted(missing)), "max_results": len(missing)}
    owned = fetcher is None
    fetcher = fetcher or Fetcher(timeout=settings.http_timeout, retries=1)
    try:
        result = fetcher.get(f"{settings.arxiv_api_url}?{urlencode(params)}")
        if result.status >= 400:
            raise SourceError(_http_error_reason(result.status, result.body, ARXIV_API))
        found = [p for p in parse_response(result.body, ARXIV_API).papers if p.arxiv_id in missing]
    except (FetchError, SourceError) as exc:
        raise InvalidInput(
            f"could not look up paper {named} on arXiv: {exc}",
            "topics",
            f"We could not reach arXiv to look up paper {named}; please try again in a few minutes.",
        ) from None
    finally:
        if owned:
            fetcher.close()
    stored.upsert(found, as_news=False)
    log.info("looked up %d of %d papers on arXiv: %s", len(found), len(missing), named)
    return missing - {p.arxiv_id for p in found}


def require_topic_papers(
    stored: PaperStore, settings: Settings, topics: Iterable[str], fetcher: Fetcher | None = None
) -> None:
    """Every paper that ``topics`` name is stored (looked up if need be), or InvalidInput."""
    unknown = look_up_papers(stored, settings, papers_of_topics(topics), fetcher)
    if unknown:
        named = ", ".join(sorted(unknown))
        raise InvalidInput(
            f"arXiv has no paper {named}: check the id or the link",
            "topics",
            f"arXiv has no paper {named}: please check the number or the link.",
        )
