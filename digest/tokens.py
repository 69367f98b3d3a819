"""Signed tokens for the links in emails: unsubscribe, preferences, confirmation (itsdangerous).

A token names the subscriber by id *and* a hash of their address, so a link keeps working
only for the person it was sent to (not for whoever later gets the same row id), and a
link never exposes the bare address. Each purpose has its own salt: an unsubscribe token
cannot be replayed as a preferences token.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

DAY = 24 * 3600
# Unsubscribe links must work however old the email is; preferences links are long-lived
# convenience; confirmation links expire with the pending subscription they confirm.
MAX_AGE = {"unsubscribe": None, "preferences": 180 * DAY, "confirm": 7 * DAY}


class TokenError(Exception):
    """The link is not valid; the message is safe to show to the person who clicked it."""


@dataclass(frozen=True)
class TokenData:
    subscriber_id: int
    email_hash: str

    def belongs_to(self, email: str) -> bool:
        return self.email_hash == email_fingerprint(email)


def email_fingerprint(email: str) -> str:
    return hashlib.sha256(email.encode("utf-8")).hexdigest()[:16]


class Tokens:
    def __init__(self, secret_key: str, confirm_days: int = 7) -> None:
        self.secret_key = secret_key
        self.max_age = {**MAX_AGE, "confirm": confirm_days * DAY}

    def _serializer(self, purpose: str) -> URLSafeTimedSerializer:
        if purpose not in self.max_age:
            raise ValueError(f"unknown token purpose {purpose!r}")
        return URLSafeTimedSerializer(self.secret_key, salt=f"paper-digest.{purpose}")

    def make(self, purpose: str, subscriber_id: int, email: str) -> str:
        return self._serializer(purpose).dumps({"s": subscriber_id, "h": email_fingerprint(email)})

    def read(self, purpose: str, token: str) -> TokenData:
        try:
            data = self._serializer(purpose).loads(token, max_age=self.max_age[purpose])
        except SignatureExpired:
            raise TokenError("this link has expired") from None
        except BadSignature:
            raise TokenError("this link is not valid (it may have been cut or changed)") from None
        try:
            return TokenData(int(data["s"]), str(data["h"]))
        except (KeyError, TypeError, ValueError):
            raise TokenError("this link is not valid") from None
