"""Links never grant more than they were made for. A digest is forwarded, printed, archived
by a mail gateway: whoever holds its links years later may unsubscribe its reader (that
link never expires), see that day's digest and vote on it, and read the reader's feed;
none of those pages may hand out a fresh link to the reader's preferences (their address,
topics, and every other link). The preferences link itself is short-lived."""

from __future__ import annotations

import re

import pytest
from test_web import csrf_token, sent_day_one, web  # noqa: F401 - the web app fixture

from digest.web import MAILS_PER_ADDRESS

LINKED = re.compile(r"/(confirm|unsubscribe|preferences|digest|feed)/([\w.-]+)")


def linked_purposes(html: str) -> set[str]:
    """The purpose of every signed link a page holds, in links, forms and anywhere else."""
    return {purpose for purpose, _ in LINKED.findall(html)}


def long_lived_pages(site: dict) -> dict[str, tuple[str, set[str]]]:
    """Each page a long-lived link opens, and the purposes its own links may have."""
    sub, digest = sent_day_one(site)
    tokens = site["tokens"]
    return {
        "unsubscribe": (
            f"/unsubscribe/{tokens.make('unsubscribe', sub.id, sub.email)}",
            {"unsubscribe"},
        ),
        "digest": (digest, {"digest"}),
        "vote": (f"{digest}/vote/2611.00001", {"digest"}),
        "feed": (f"/feed/{tokens.make('feed', sub.id, sub.email)}", {"feed", "digest"}),
    }


@pytest.mark.parametrize("page", ["unsubscribe", "digest", "vote", "feed"])
def test_a_long_lived_link_opens_no_more_powerful_link(web: dict, page: str) -> None:  # noqa: F811
    path, allowed = long_lived_pages(web)[page]
    response = web["client"].get(path)
    assert response.status_code == 200
    found = linked_purposes(response.get_data(as_text=True))
    assert found <= allowed, f"the {page} page links to {sorted(found - allowed)}"


def test_the_unsubscribe_page_mails_a_preferences_link_to_the_address(web: dict) -> None:  # noqa: F811
    """Whoever holds the unsubscribe link may ask; only the address's owner gets the link."""
    path, _ = long_lived_pages(web)["unsubscribe"]
    asked = web["client"].post(
        f"{path}/preferences-link", data={"csrf_token": csrf_token(web["client"], path)}
    )
    page = asked.get_data(as_text=True)
    assert asked.status_code == 200 and "Check your inbox" in page
    assert linked_purposes(page) <= {"unsubscribe"}
    (mail,) = web["sink"].handler.received
    assert mail.recipient == "ada@example.org"
    text = mail.message().get_body(("plain",)).get_content()
    link = re.search(r"https://digest\.example\.org(/preferences/\S+)", text).group(1)
    assert "Your digest" in web["client"].get(link).get_data(as_text=True)


def test_asking_for_preferences_links_is_throttled_like_sign_up_mail(web: dict) -> None:  # noqa: F811
    path, _ = long_lived_pages(web)["unsubscribe"]
    token = csrf_token(web["client"], path)
    for _ in range(MAILS_PER_ADDRESS.count + 2):
        asked = web["client"].post(f"{path}/preferences-link", data={"csrf_token": token})
        assert asked.status_code == 200, "the page does not say whether a mail went out"
    assert len(web["sink"].handler.received) == MAILS_PER_ADDRESS.count
