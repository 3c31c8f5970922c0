"""Idempotency-Key on every POST of the API (the IETF draft's header, as Stripe and others use it).

The first request with a key runs and its response is stored; a retry with the same key and the
same request gets that response again (`Idempotent-Replayed: true`) and runs nothing. The same key
with a different request is a 422; a retry while the first is still running is a 409. A response
that is a server error is not kept, so a retry runs again. Keys belong to the token's user. A
response that holds a secret (`SECRET_PATHS`) is never kept either: a retry does it again.

The fingerprint covers method, path and the whole body: a JSON body as sent; a multipart upload
by its parts (field names, file names and every byte of each file, read in chunks from Django's
spool, never held in memory), since its boundary differs on every retry. So a different file sent
with a reused key is a 422, never silently answered with the first file's id.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta

from django.core.exceptions import SuspiciousOperation
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.utils import timezone

from calculations.auth import TokenAuth
from calculations.errors import Forbidden
from calculations.models import IdempotentRequest

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
SECRET_PATHS = frozenset({"/api/v2/users/me/webhook-secret"})  # a rotated secret, not to lie in a table
KEEP_FOR = timedelta(hours=24)  # a retry comes within minutes; the reconciler deletes older records


def expire_records() -> int:
    """Delete the records older than KEEP_FOR; their keys may be used again."""
    deleted, _ = IdempotentRequest.objects.filter(created_at__lt=timezone.now() - KEEP_FOR).delete()
    return deleted


def _fingerprint(request: HttpRequest) -> str:
    digest = hashlib.sha256(f"{request.method} {request.get_full_path()}\n".encode())
    if request.content_type != "multipart/form-data":
        digest.update(request.body)
        return digest.hexdigest()
    for name in sorted(request.POST):
        digest.update(json.dumps(["field", name, request.POST.getlist(name)]).encode())
    for name in sorted(request.FILES):
        for upload in request.FILES.getlist(name):
            digest.update(json.dumps(["file", name, upload.name, upload.size]).encode())
            for chunk in upload.chunks():
                digest.update(chunk)
            upload.seek(0)  # the view reads it again
    return digest.hexdigest()


def _error(status: int, detail: str) -> JsonResponse:
    return JsonResponse({"detail": detail}, status=status)


class IdempotencyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        key = request.headers.get(HEADER)
        if request.method != "POST" or key is None or not request.path.startswith(("/api/", "/ga4gh/")):
            return self.get_response(request)
        if not 0 < len(key) <= MAX_KEY_LENGTH or not key.isprintable():
            return _error(400, f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable characters")
        authorization = request.headers.get("Authorization", "")
        scheme, _, token = authorization.partition(" ")
        try:
            user = TokenAuth().authenticate(request, token) if scheme.lower() == "bearer" and token else None
        except Forbidden:
            user = None
        if user is None:
            return self.get_response(request)  # the route answers 401 or 403
        try:
            fingerprint = _fingerprint(request)
        except (MultiPartParserError, SuspiciousOperation) as exc:  # (no boundary, too many parts: else an HTML 400)
            return _error(400, f"the multipart form cannot be read ({exc or type(exc).__name__})")
        try:
            with transaction.atomic():
                record = IdempotentRequest.objects.create(owner=user, key=key, fingerprint=fingerprint)
        except IntegrityError:
            return self._replay(user.pk, key, fingerprint)
        try:
            response = self.get_response(request)
        except BaseException:
            record.delete()
            raise
        if response.status_code >= 500 or response.streaming or request.path.rstrip("/") in SECRET_PATHS:
            record.delete()  # not an answer worth repeating, or one not to keep: a retry runs again
            return response
        record.status_code = response.status_code
        record.content_type = response.get("Content-Type", "")
        record.body = response.content
        record.save(update_fields=["status_code", "content_type", "body"])
        return response

    @staticmethod
    def _replay(owner_id: int, key: str, fingerprint: str) -> HttpResponse:
        record = IdempotentRequest.objects.filter(owner_id=owner_id, key=key).first()
        if record is None:  # the first request failed and let go of the key meanwhile
            return _error(409, f"a request with this {HEADER} just failed; retry it")
        if record.fingerprint != fingerprint:
            return _error(422, f"this {HEADER} was used for a different request (method, path or body)")
        if record.status_code is None:
            return _error(409, f"a request with this {HEADER} is still in progress; retry it later")
        response = HttpResponse(bytes(record.body), status=record.status_code, content_type=record.content_type)
        response["Idempotent-Replayed"] = "true"
        return response
