"""Bounds and headers every API request and response gets, before any view runs.

- A body must declare its length (a chunked one is a 411: WSGI would read it as empty), and is
  bounded by it: JSON bodies by `max_json_bytes`, uploads by
  `max_upload_bytes`, a crate's zip (POST /api/v2/crates) by `crate.import_max_zip_bytes` (checked
  before Django spools a byte to disk). Past it: a JSON 413.
- A JSON body is parsed here, once, counting its members as it goes: a body that is small but
  holds a huge number of keys (each one a validation error later) is refused before it can grow
  the worker. The parsed value is kept on the request for the API's parser.
- API responses are never cached by intermediaries (`Cache-Control: no-store`); the admin gets a
  Content-Security-Policy.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

from emgapiv2.config import get_settings

# the two APIs: /api/v2 and GA4GH TES at /ga4gh/tes/v1
API_PREFIXES = ("/api/", "/ga4gh/")
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CRATE_IMPORT_PATH = "/api/v2/crates"
MULTIPART_OVERHEAD_BYTES = 64 * 1024  # boundaries and part headers around the one file
PARSED_JSON_ATTRIBUTE = "_emgapi_json"
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # the cheap test before the full one
ADMIN_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'self'; object-src 'none'"
)


class TooManyMembers(ValueError):
    pass


def _counting_hook(limit: int) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    seen = 0

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal seen
        seen += len(pairs)
        if seen > limit:
            raise TooManyMembers(f"the JSON body has more than {limit} keys in all; no request needs that many")
        return dict(pairs)

    return hook


def _declared_length(request: HttpRequest) -> int | None:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None


def _no_constant(name: str) -> Any:
    """NaN and ±Infinity: Python's parser accepts them, JSON has no such values, and nothing can store them."""
    raise ValueError(f"{name} is not a JSON value (give a finite number)")


def _finite(text: str) -> float:
    """A number too large for a float (1e999) would be parsed as infinity: JSON has no such value either."""
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text[:40]} is too large a number (give a finite one)")
    return value


def _encodable(value: Any) -> bool:
    """Whether every string in a parsed body is UTF-8 text (JSON escapes can name lone surrogates,
    which nothing downstream can encode, hash or store)."""
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    return True


def _refuse(status: int, detail: str) -> JsonResponse:
    return JsonResponse({"detail": detail}, status=status)


def _check_body(request: HttpRequest) -> HttpResponse | None:
    settings = get_settings()
    if not request.META.get("CONTENT_LENGTH") and "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
        # WSGI reads a body of no declared length as empty: answered as if nothing had been sent
        return _refuse(411, "send the body with a Content-Length header: a chunked body is not read")
    length = _declared_length(request)
    if length is None:
        return _refuse(400, "the Content-Length header is not a number")
    if request.content_type == "multipart/form-data":
        if request.path.rstrip("/") == CRATE_IMPORT_PATH:  # a crate's zip has a limit of its own
            limit, what = settings.crate.import_max_zip_bytes, "per crate (EMGAPI_CRATE__IMPORT_MAX_ZIP_BYTES)"
        else:
            limit, what = settings.max_upload_bytes, "per file"
        if length > limit + MULTIPART_OVERHEAD_BYTES:
            return _refuse(413, f"the upload is {length} bytes; the limit is {limit} bytes {what}")
        return None
    if length > settings.max_json_bytes:
        return _refuse(
            413,
            f"the request body is {length} bytes; the limit for a JSON body is {settings.max_json_bytes} bytes. "
            "Upload large data as a file (POST /api/v2/files) and pass its id",
        )
    if length and request.content_type == "application/json":
        try:
            value = json.loads(
                request.body,
                object_pairs_hook=_counting_hook(settings.max_json_members),
                parse_constant=_no_constant,
                parse_float=_finite,
            )
        except TooManyMembers as exc:
            return _refuse(413, str(exc))
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            return _refuse(400, f"the request body is not valid JSON: {exc}")
        if SURROGATE_ESCAPE.search(request.body) and not _encodable(value):
            return _refuse(400, "the request body holds an unpaired UTF-16 surrogate escape (\\udXXX): not text")
        setattr(request, PARSED_JSON_ATTRIBUTE, value)
    return None


def parsed_json(request: HttpRequest) -> Any:
    """The body as the middleware parsed it; a body it did not parse is parsed with the same bounds."""
    if hasattr(request, PARSED_JSON_ATTRIBUTE):
        return getattr(request, PARSED_JSON_ATTRIBUTE)
    return json.loads(
        request.body,
        object_pairs_hook=_counting_hook(get_settings().max_json_members),
        parse_constant=_no_constant,
        parse_float=_finite,
    )


class RequestBoundsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        is_api = request.path.startswith(API_PREFIXES)
        if is_api and request.method in BODY_METHODS and (refused := _check_body(request)) is not None:
            response: HttpResponse = refused
        else:
            response = self.get_response(request)
        if is_api:
            response["Cache-Control"] = "no-store"
        elif request.path.startswith("/admin/"):
            response.setdefault("Content-Security-Policy", ADMIN_CSP)
        return response
