"""Emails rendered per second on one core for a 10-paper digest:
(a) premailer on every email, (b) CSS inlined once per template, plus the MIME build,
and an element-by-element check that (a) and (b) produce the same HTML. Beside (b), each
other fast path swapped for its reference (digest.emails.Paths): paper cards rendered
every time instead of cached, and the stdlib's EmailMessage instead of the direct writer.

Run: .venv/bin/python -m bench.bench_rendering [--seconds 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
from collections.abc import Callable

from lxml import html as lxml_html

from bench.corpus import real_papers
from digest import emails
from digest.emails import Paths
from digest.messages import write_reference
from digest.rendering import (
    DigestContent,
    default_environment,
    inline_per_email,
    paper_item,
    render_digest,
    render_email,
)
from digest.settings import Settings


def sample_digests(count: int) -> list[DigestContent]:
    papers = real_papers()
    digests = []
    for n in range(count):
        chosen = [papers[(n * 7 + i) % len(papers)] for i in range(10)]
        items = tuple(
            paper_item(p, "efficient attention", 'matches "efficient attention": attention')
            for p in chosen
        )
        digests.append(
            DigestContent(
                dt.date(2026, 11, 23),
                f"user{n}@example.org",
                ("efficient attention", "rl"),
                items,
                (),
                f"https://d.example/preferences/p{n}",
                f"https://d.example/unsubscribe/u{n}",
            )
        )
    return digests


def rate(
    work: Callable[[DigestContent], object], digests: list[DigestContent], seconds: float
) -> float:
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        work(digests[done % len(digests)])
        done += 1
    return done / (time.perf_counter() - start)


def median_rates(
    works: dict[str, Callable[[DigestContent], object]],
    digests: list[DigestContent],
    seconds: float,
    rounds: int = 5,
) -> dict[str, float]:
    """Interleave the contenders round by round and keep each one's median: machine noise
    (15-25 % between runs here) then hits both sides alike instead of skewing the ratio."""
    samples: dict[str, list[float]] = {name: [] for name in works}
    for _ in range(rounds):
        for name, work in works.items():
            samples[name].append(rate(work, digests, seconds / rounds))
    return {name: statistics.median(values) for name, values in samples.items()}


def same_html(a: str, b: str) -> bool:
    left, right = list(lxml_html.fromstring(a).iter()), list(lxml_html.fromstring(b).iter())
    return len(left) == len(right) and all(
        (x.tag, dict(x.attrib), (x.text or "").strip())
        == (y.tag, dict(y.attrib), (y.text or "").strip())
        for x, y in zip(left, right, strict=True)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--seconds", type=float, default=4.0, help="per contender, over 5 interleaved rounds"
    )
    args = parser.parse_args()
    digests = sample_digests(50)
    render_digest(digests[0])  # load and inline the templates once, outside the timing
    settings = Settings()
    now = dt.datetime(2026, 11, 23, 7)
    uncached = default_environment(fragment_cache=False)
    render_digest(digests[0], uncached)
    stock = Paths(render_email, write_reference)
    rates = median_rates(
        {
            "per_email": inline_per_email,
            "cached": render_digest,
            "with_mime": lambda d: emails.digest(d, settings, 1, now).as_bytes(),
            "no_cache": lambda d: render_digest(d, uncached),
            "stock_mime": lambda d: emails.digest(d, settings, 1, now, paths=stock).as_bytes(),
        },
        digests,
        args.seconds,
    )
    per_email, cached, with_mime = rates["per_email"], rates["cached"], rates["with_mime"]
    equal = all(same_html(render_digest(d).html, inline_per_email(d)) for d in digests)
    print(f"(a) premailer on every email:        {per_email:8.0f} emails/s")
    print(
        f"(b) inlined once per template:       {cached:8.0f} emails/s  ({cached / per_email:.0f}x (a))"
    )
    print(f"(b) + MIME message built to bytes:   {with_mime:8.0f} emails/s")
    print(f"(b) without the card cache:          {rates['no_cache']:8.0f} emails/s")
    print(f"(b) + MIME by the stdlib's writer:   {rates['stock_mime']:8.0f} emails/s")
    print(
        f"per-template == per-email inlining on {len(digests)} digests, element by element: {equal}"
    )
    print(
        f"target (b >= 50x a and >= 1000/s): {'met' if cached >= 50 * per_email and cached >= 1000 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
