"""Signed link tokens: bound to purpose and person, tamper-proof, expiring where sensible."""

from __future__ import annotations

import datetime as dt
import hashlib
import time

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from digest.tokens import DAY, INVALID_LINK, TokenData, TokenError, Tokens

tokens = Tokens("test-secret", confirm_days=7)


def test_round_trip_names_the_subscriber_without_exposing_the_email() -> None:
    token = tokens.make("unsubscribe", 42, "ada@example.org")
    assert "ada" not in token and "example" not in token
    data = tokens.read("unsubscribe", token)
    assert data.subscriber_id == 42 and data.belongs_to("ada@example.org")
    assert not data.belongs_to("eve@example.org")


@pytest.mark.parametrize(
    "mangle",
    [lambda t: t[:-2], lambda t: t[:10] + ("A" if t[10] != "A" else "B") + t[11:], lambda t: "x"],
)
def test_tampered_or_cut_tokens_are_rejected(mangle) -> None:
    token = tokens.make("preferences", 1, "a@example.org")
    with pytest.raises(TokenError) as caught:
        tokens.read("preferences", mangle(token))
    assert str(caught.value) == INVALID_LINK


def test_a_token_only_works_for_its_purpose_and_secret() -> None:
    token = tokens.make("unsubscribe", 1, "a@example.org")
    with pytest.raises(TokenError):
        tokens.read("preferences", token)
    with pytest.raises(TokenError):
        Tokens("another-secret").read("unsubscribe", token)


def test_confirmation_expires_but_unsubscribe_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    confirm = tokens.make("confirm", 1, "a@example.org")
    unsubscribe = tokens.make("unsubscribe", 1, "a@example.org")
    later = int(time.time()) + 8 * 24 * 3600
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: later)
    with pytest.raises(TokenError) as caught:
        tokens.read("confirm", confirm)
    assert caught.value.reason == "expired"
    assert str(caught.value) == INVALID_LINK, "an expired link reads like any other invalid one"
    assert tokens.read("unsubscribe", unsubscribe).subscriber_id == 1


def test_a_payload_travels_signed_with_the_moment_it_was_issued() -> None:
    before = time.time()
    token = tokens.make("confirm", 7, "a@example.org", {"t": ["rl"], "z": "Europe/Paris"})
    data = tokens.read("confirm", token)
    assert data.payload == {"t": ["rl"], "z": "Europe/Paris"}
    assert before - 1e-5 <= data.issued_at.replace(tzinfo=dt.UTC).timestamp() <= time.time() + 1e-5
    assert (
        tokens.read("preferences", tokens.make("preferences", 7, "a@example.org")).issued_at is None
    )


def test_a_validly_signed_but_malformed_token_is_refused_like_any_other() -> None:
    """Signed with our key and salt, yet not what make() writes (an older release's, or a
    leaked key's experiment): refused with the same message, the log saying why."""
    serializer = URLSafeTimedSerializer("test-secret", salt="paper-digest.digest")
    for data in (
        {"s": "x", "h": "ab"},
        {"h": "ab"},
        {"s": 1},
        {"s": 1, "h": "ab", "i": "soon"},
        [1],
    ):
        with pytest.raises(TokenError) as caught:
            tokens.read("digest", serializer.dumps(data))
        assert caught.value.reason == "malformed payload" and str(caught.value) == INVALID_LINK
    with pytest.raises(TokenError) as caught:
        tokens.read("digest", "not.a.token")
    assert caught.value.reason == "bad signature"


def test_what_a_plain_token_reads_back_as() -> None:
    data = tokens.read("unsubscribe", tokens.make("unsubscribe", 3, "a@example.org"))
    assert data == TokenData(3, tokens.fingerprint("a@example.org"), None, {}, None)
    confirm = tokens.read("confirm", tokens.make("confirm", 3, "a@example.org", {"t": ["rl"]}))
    assert confirm.issued_at is not None and confirm.issued_at.tzinfo is None, (
        "naive UTC, as stored"
    )


def test_a_bound_link_names_its_day_and_cannot_be_moved_to_another() -> None:
    digest = tokens.make("digest", 3, "a@example.org", bound="2026-11-30")
    assert tokens.read("digest", digest).bound == "2026-11-30"
    assert (
        tokens.read("digest", digest).payload == {}
        and tokens.read("digest", digest).issued_at is None
    )
    other = tokens.make("digest", 3, "a@example.org", bound="2026-11-29")
    spliced = other.split(".")[0] + "." + ".".join(digest.split(".")[1:])
    with pytest.raises(TokenError):
        tokens.read("digest", spliced)
    with pytest.raises(TokenError):
        tokens.read("preferences", digest)


def test_every_purpose_has_its_own_lifetime() -> None:
    assert Tokens("k").max_age == {
        "unsubscribe": None,
        "feed": None,
        "preferences": 180 * DAY,
        "digest": 365 * DAY,
        "confirm": 7 * DAY,
    }
    assert Tokens("k", confirm_days=2).max_age["confirm"] == 2 * DAY
    with pytest.raises(ValueError, match="unknown token purpose 'nope'"):
        Tokens("k").make("nope", 1, "a@example.org")


def test_the_issue_time_is_utc_whatever_the_machines_time_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stored times are naive UTC: a server set to New York must not read a link as five
    hours older or younger than it is."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        token = tokens.make("confirm", 3, "a@example.org", {"t": ["rl"]})
        issued = tokens.read("confirm", token).issued_at
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        assert abs((now - issued).total_seconds()) < 60
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_link_does_not_let_anyone_check_a_guessed_address_without_the_key() -> None:
    """Anyone can read a token's payload (it is signed, not encrypted): what names the
    address there must be useless without the secret key."""
    token = tokens.make("unsubscribe", 42, "ada@example.org")
    _, payload = URLSafeTimedSerializer("any key").loads_unsafe(token)
    plain_hash = hashlib.sha256(b"ada@example.org").hexdigest()
    assert not any(plain_hash.startswith(str(value)) for value in payload.values())
    assert tokens.fingerprint("ada@example.org") != Tokens("other-secret").fingerprint(
        "ada@example.org"
    )
    assert tokens.read("unsubscribe", token).belongs_to("ada@example.org")


def test_a_link_sent_before_keyed_fingerprints_still_works() -> None:
    """Unsubscribe links never expire: the ones already in inboxes (the address's plain
    SHA-256 under "h") keep working, for their own address only."""
    serializer = URLSafeTimedSerializer("test-secret", salt="paper-digest.unsubscribe")
    old = serializer.dumps({"s": 42, "h": hashlib.sha256(b"ada@example.org").hexdigest()[:16]})
    data = tokens.read("unsubscribe", old)
    assert data.belongs_to("ada@example.org") and not data.belongs_to("eve@example.org")
