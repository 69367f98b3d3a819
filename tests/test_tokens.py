"""Signed link tokens: bound to purpose and person, tamper-proof, expiring where sensible."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from itsdangerous import TimestampSigner

from digest.tokens import INVALID_LINK, TokenError, Tokens

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
