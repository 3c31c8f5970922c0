"""Bearer-token authentication for the API (tokens are stored hashed)."""

from typing import Any

from django.http import HttpRequest
from ninja.security import HttpBearer

from calculations.actions import hash_token
from calculations.models import ApiToken


class TokenAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> Any:
        found = (
            ApiToken.objects.select_related("user").filter(token_sha256=hash_token(token), user__is_active=True).first()
        )
        return found.user if found else None
