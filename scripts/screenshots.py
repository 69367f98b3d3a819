"""Screenshots of what people see, in headless Chromium (Debian package `chromium`).

    .venv/bin/python scripts/screenshots.py [--out screenshots/]

Renders a realistic digest (one recorded day of Hugging Face and arXiv papers, with upvotes,
a Trending today section and a topic with nothing new) and captures it at phone (375 px)
and desktop (700 px) widths, in light and dark mode; then serves the web app on a
temporary database and captures each page (subscribe, the lists home page and a list's
page, confirm, preferences, unsubscribe, vote, archive, a notice) at both widths, light and dark, with a digest already sent and two
votes cast, so the vote page, the archive ("View in browser") and the preferences page's
votes and past digests have something to show. Two of the pictures are also copied to docs/ for the README.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from digest.editions import digest_content, plan_edition  # noqa: E402
from digest.records import SubscriberRecord  # noqa: E402
from digest.rendering import DigestContent, render_digest  # noqa: E402
from digest.sources import PaperRecord, merge_paper, parse_response  # noqa: E402
from digest.tokens import Tokens  # noqa: E402

WIDTHS = {"phone": 375, "desktop": 700}
SAMPLE_DAY = ROOT / "digest" / "sample_data"  # the demo's recorded day, 13 July 2026
README_PICTURES = {"digest-desktop.png": "digest.png", "web-subscribe-phone.png": "subscribe.png"}


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    sys.exit("chromium not found: apt-get install chromium")


def capture(url: str, out: Path, width: int, dark: bool = False, height: int = 2400) -> None:
    with tempfile.TemporaryDirectory() as profile:
        args = [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--screenshot={out}",
            url,
        ]
        if dark:
            args.insert(1, "--force-dark-mode")
            args.insert(1, "--blink-settings=preferredColorScheme=0")
        subprocess.run(args, check=True, capture_output=True, timeout=180)  # 2 busy cores
    print(f"wrote {out}")


def one_days_papers() -> list[PaperRecord]:
    """The recorded day's papers from every source, merged by arXiv id as ingestion does."""
    merged: dict[str, dict] = {}
    for path in sorted(SAMPLE_DAY.glob("*_2026-07-13*")):
        for paper in parse_response(path.read_bytes()).papers:
            merged[paper.arxiv_id] = merge_paper(merged.get(paper.arxiv_id), paper)
    return [PaperRecord(arxiv_id=pid, **fields) for pid, fields in merged.items()]


SAMPLE_TOPICS = (
    "reinforcement learning",
    "large language model agents",
    "lattice quantum chromodynamics",
)
SAMPLE_NOW = dt.datetime(2026, 7, 13, 7, 0)


def sample_digest() -> DigestContent:
    sub = SubscriberRecord(
        1,
        "ada@example.org",
        "active",
        SAMPLE_TOPICS,
        "Europe/London",
        7,
        5,
        dt.datetime(2026, 7, 1),
        dt.datetime(2026, 7, 1),
    )
    plan = plan_edition(one_days_papers(), [sub], {}, SAMPLE_NOW)
    tokens = Tokens("screenshots")
    return digest_content(
        sub,
        plan.picks[1],
        plan.papers,
        SAMPLE_NOW.date(),
        tokens,
        "https://digest.example.org",
        plan.quiet[1],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    html_file = args.out / "digest.html"
    html_file.write_text(render_digest(sample_digest()).html, encoding="utf-8")
    for name, width in WIDTHS.items():
        capture(html_file.as_uri(), args.out / f"digest-{name}.png", width)
        capture(html_file.as_uri(), args.out / f"digest-{name}-dark.png", width, dark=True)
    capture_web_pages(args.out)
    docs = ROOT / "docs"
    docs.mkdir(exist_ok=True)
    for picture, name in README_PICTURES.items():
        shutil.copyfile(args.out / picture, docs / name)
        print(f"copied {picture} to docs/{name}")


def capture_web_pages(out: Path) -> None:
    """Serve the real app on a throwaway SQLite database and photograph every page."""
    import threading

    from waitress.server import create_server

    from digest.records import SubscriberDefaults
    from digest.settings import Settings
    from digest.storage import Storage
    from digest.subscriptions import build_subscriber_input
    from digest.tokens import Tokens
    from digest.web import create_app

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), secret_key="screenshots")
        store = Storage.from_url(settings.resolved_database_url)
        store.db.upgrade()
        sub = store.subscribers.add(
            build_subscriber_input("ada@example.org", list(SAMPLE_TOPICS)), SubscriberDefaults()
        )
        picks = send_sample_digest(store, sub)
        store.lists.add(  # a second public list: the home page lists both
            "ml-weekly",
            "ML Weekly",
            description="The week's best papers on machine learning, picked for your topics "
            "and sent on Monday morning.",
            cadence="weekly:mon",
            sender="ML Weekly <ml-weekly@example.org>",
            suggested_topics=["world models", "sparse mixture of experts", "RLHF"],
        )
        tokens = Tokens(settings.secret_key)
        app = create_app(settings, store, redis_conn=None)
        # The preferences page previews its topics as it loads. The first preview loads
        # MiniLM and embeds the day (a minute on a busy machine): done once here, or every
        # capture's preview holds a server thread until the later pages time out.
        app.test_client().get("/preview", query_string={"topics": "\n".join(SAMPLE_TOPICS)})
        server = create_server(app, host="127.0.0.1", port=0)
        threading.Thread(target=server.run, daemon=True).start()
        base = f"http://127.0.0.1:{server.effective_port}"
        edition = SAMPLE_NOW.date().isoformat()
        digest = f"/digest/{tokens.make('digest', sub.id, sub.email, bound=edition)}"
        pages = {
            "subscribe": "/l/daily",
            "lists": "/",
            "list": "/l/ml-weekly",
            "confirm": f"/confirm/{tokens.make('confirm', sub.id, sub.email, {})}",
            "preferences": f"/preferences/{tokens.make('preferences', sub.id, sub.email)}",
            "unsubscribe": f"/unsubscribe/{tokens.make('unsubscribe', sub.id, sub.email)}",
            "vote": f"{digest}/vote/{picks[1]}?v=up",
            "archive": digest,
            "notice": "/unsubscribe/not-a-token",  # the "link does not work" notice
        }
        try:
            for slug, path in pages.items():
                for name, width in WIDTHS.items():
                    capture(base + path, out / f"web-{slug}-{name}.png", width, height=1300)
                    capture(base + path, out / f"web-{slug}-{name}-dark.png", width, True, 1300)
        finally:
            server.close()


def send_sample_digest(store: Any, sub: SubscriberRecord) -> list[str]:
    """Record the sample day's digest as sent to ``sub``, with a vote each way; its picks."""
    from digest.records import NewDelivery, SentRecord

    papers = one_days_papers()
    store.papers.upsert(papers)
    plan = plan_edition(papers, [sub], {}, SAMPLE_NOW)
    picks = plan.picks[sub.id]
    _, (delivery,) = store.deliveries.create([NewDelivery(sub.id, SAMPLE_NOW.date(), picks)])
    claim, _ = store.deliveries.claim([delivery], SAMPLE_NOW)
    ids = [p["arxiv_id"] for p in picks]
    store.deliveries.mark_sent(
        [SentRecord(delivery, sub.id, claim, "<sample@example.org>", SAMPLE_NOW, tuple(ids))]
    )
    store.feedback.record_vote(sub.id, ids[0], 1, SAMPLE_NOW)
    store.feedback.record_vote(sub.id, ids[2], -1, SAMPLE_NOW)
    return ids


if __name__ == "__main__":
    main()
