"""Bearer-token authentication for the API: tokens are stored hashed, may expire, and may be
read-only (a read-only token can GET, and any other method is a 403)."""

import threading
import time
from typing import Any

from django.http import HttpRequest
from django.utils import timezone
from ninja.security import HttpBearer

from calculations.actions.tokens import do_record_token_use, hash_token
from calculations.errors import Forbidden
from calculations.models import ApiToken

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


# A valid token is remembered for a few seconds: a client polling a calculation then costs no
# token query per request. The price: a token revoked in the admin, or a deactivated user, keeps
# working for at most this long (expiry is checked on every request).
CACHE_SECONDS = 5.0
CACHE_ENTRIES = 10_000
_cache: dict[str, tuple[float, ApiToken]] = {}
_cache_lock = threading.Lock()


def _look_up(token_sha256: str) -> ApiToken | None:
    now = time.monotonic()
    with _cache_lock:
        cached = _cache.get(token_sha256)
    if cached is not None and now - cached[0] < CACHE_SECONDS:
        found: ApiToken | None = cached[1]
    else:
        found = ApiToken.objects.select_related("user").filter(token_sha256=token_sha256, user__is_active=True).first()
        with _cache_lock:
            if len(_cache) >= CACHE_ENTRIES:
                _cache.clear()
            if found is None:
                _cache.pop(token_sha256, None)
            else:
                _cache[token_sha256] = (now, found)
    if found is not None and found.expires_at is not None and found.expires_at <= timezone.now():
        return None
    return found


class TokenAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> Any:
        found = _look_up(hash_token(token))
        if found is None:
            return None  # unknown, revoked or expired: 401
        if request.method not in READ_METHODS and not found.can_write:
            raise Forbidden("this token is read-only: create one with write access to upload, submit or cancel")
        do_record_token_use(found)
        request.api_token = found  # type: ignore[attr-defined]  # (what it may do: GET /users/me/webhook-secret)
        return found.user
