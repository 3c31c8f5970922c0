"""What a locked-out admin login sees: a plain 429 that says why and for how long."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse

from emgapiv2.config import get_settings


def locked_out(request: HttpRequest, credentials: Any = None, *args: Any, **kwargs: Any) -> HttpResponse:
    minutes = get_settings().admin_login.cooloff_minutes
    response = HttpResponse(
        f"Too many failed logins for this account from your address: try again in {minutes:g} minutes.\n",
        status=429,
        content_type="text/plain; charset=utf-8",
    )
    response["Retry-After"] = str(int(minutes * 60))
    return response
