"""Bearer-token authentication for the API: tokens are stored hashed, may expire, and may be
read-only (a read-only token can GET, and any other method is a 403)."""

from typing import Any

from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone
from ninja.security import HttpBearer

from calculations.actions.tokens import do_record_token_use, hash_token
from calculations.errors import Forbidden
from calculations.models import ApiToken

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class TokenAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> Any:
        found = (
            ApiToken.objects.select_related("user")
            .filter(token_sha256=hash_token(token), user__is_active=True)
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
            .first()
        )
        if found is None:
            return None  # unknown, revoked or expired: 401
        if request.method not in READ_METHODS and not found.can_write:
            raise Forbidden("this token is read-only: create one with write access to upload, submit or cancel")
        do_record_token_use(found)
        return found.user
