"""Signed tokens for the links in emails: unsubscribe, preferences, confirmation, one day's
digest (view it in a browser, vote on its papers) and the feed (itsdangerous).

A token names the subscriber by id *and* a fingerprint of their address, so a link keeps
working only for the person it was sent to (not for whoever later gets the same row id).
Anyone holding a link can read its payload (it is signed, not encrypted), so the
fingerprint is an HMAC under the secret key: a plain hash would let whoever has a
forwarded digest check guessed addresses against it offline. Each purpose has its own salt: an unsubscribe token
cannot be replayed as a preferences token. A link about one thing (one day's digest) is also
``bound`` to it: changing the day in the URL breaks the signature.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import time
from dataclasses import dataclass, field
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

DAY = 24 * 3600
# Unsubscribe links must work however old the email is, and so must a feed reader's
# subscription; preferences and digest links (view in browser, votes) are long-lived;
# confirmation links expire with the pending subscription they confirm.
MAX_AGE = {
    "unsubscribe": None,
    "feed": None,
    "preferences": 180 * DAY,
    "digest": 365 * DAY,
    "confirm": 7 * DAY,
}


INVALID_LINK = "this link does not work: it may be incomplete, expired or no longer valid"
MAX_SUBSCRIBER_ID = 2**31 - 1  # the database's integer: a larger id names no one


class TokenError(Exception):
    """The link is not valid. Whatever the reason (cut, forged, expired, for another purpose
    or another person), the message shown is the same: a different message per reason would
    tell someone probing links which of their guesses came close."""

    def __init__(self, reason: str) -> None:
        super().__init__(INVALID_LINK)
        self.reason = reason  # for the log only


@dataclass(frozen=True)
class TokenData:
    subscriber_id: int
    email_hash: str
    issued_at: dt.datetime | None = None  # naive UTC, to the microsecond; links with a payload only
    payload: dict[str, Any] = field(
        default_factory=dict
    )  # what the link asks for (a sign-up's settings)
    bound: str | None = None  # the one thing the link is about: a day's digest
    # the fingerprint's key; None: a link made before fingerprints were keyed
    email_key: bytes | None = field(default=None, repr=False, compare=False)

    def belongs_to(self, email: str) -> bool:
        return hmac.compare_digest(self.email_hash, email_fingerprint(email, self.email_key))


def email_fingerprint(email: str, key: bytes | None) -> str:
    """The address as a link names it: an HMAC under ``key``. Without a key, the plain
    SHA-256 that links carried before (under "h"): still read, so that the unsubscribe
    links already in inboxes, which never expire, keep working; never written."""
    if key is None:
        return hashlib.sha256(email.encode("utf-8")).hexdigest()[:16]
    return hmac.new(key, email.encode("utf-8"), hashlib.sha256).hexdigest()[:16]


class Tokens:
    def __init__(self, secret_key: str, confirm_days: int = 7) -> None:
        self.secret_key = secret_key
        self.max_age = {**MAX_AGE, "confirm": confirm_days * DAY}
        self.email_key = hmac.new(
            secret_key.encode("utf-8"), b"paper-digest.email", hashlib.sha256
        ).digest()
        # one per purpose: a digest signs several links, and each serializer derives its key
        self._serializers: dict[str, URLSafeTimedSerializer] = {}

    def _serializer(self, purpose: str) -> URLSafeTimedSerializer:
        if purpose not in self.max_age:
            raise ValueError(f"unknown token purpose {purpose!r}")
        if purpose not in self._serializers:
            self._serializers[purpose] = URLSafeTimedSerializer(
                self.secret_key, salt=f"paper-digest.{purpose}"
            )
        return self._serializers[purpose]

    def fingerprint(self, email: str) -> str:
        return email_fingerprint(email, self.email_key)

    def make(
        self,
        purpose: str,
        subscriber_id: int,
        email: str,
        payload: dict[str, Any] | None = None,
        bound: str | None = None,
    ) -> str:
        """A signed link token. With a ``payload`` it also records when it was issued, to the
        microsecond, so a sign-up link can be told apart from an unsubscribe a moment later.
        ``bound``: the day's digest the link is about, signed with it."""
        data: dict[str, Any] = {"s": subscriber_id, "k": self.fingerprint(email)}
        if payload is not None:
            data.update(p=payload, i=time.time())
        if bound is not None:
            data["b"] = bound
        return self._serializer(purpose).dumps(data)

    def read(self, purpose: str, token: str) -> TokenData:
        try:
            data = self._serializer(purpose).loads(token, max_age=self.max_age[purpose])
        except SignatureExpired:
            raise TokenError("expired") from None
        except BadSignature:
            raise TokenError("bad signature") from None
        try:
            issued = (
                dt.datetime.fromtimestamp(float(data["i"]), dt.UTC).replace(tzinfo=None)
                if "i" in data
                else None
            )
            bound = str(data["b"]) if "b" in data else None
            key = self.email_key if "k" in data else None
            fingerprint = str(data["k"] if key else data["h"])
            subscriber_id = int(data["s"])
            payload = dict(data.get("p") or {})
        except (AttributeError, KeyError, TypeError, ValueError, OverflowError):
            raise TokenError("malformed payload") from None
        if not 0 < subscriber_id <= MAX_SUBSCRIBER_ID:
            raise TokenError("subscriber id out of range")
        return TokenData(subscriber_id, fingerprint, issued, payload, bound, key)
