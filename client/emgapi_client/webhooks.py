"""Checking a notification a receiver got: its X-Emgapi-Signature, as GitHub's webhooks are checked."""

from __future__ import annotations

import hashlib
import hmac


def verify_signature(secret: str, body: bytes, signature: str | None) -> bool:
    """Whether `signature` (the X-Emgapi-Signature header) is `sha256=<hex HMAC-SHA256 of the raw body
    with your webhook secret>`; compared in constant time. Check the raw bytes, before parsing them."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature or "")
