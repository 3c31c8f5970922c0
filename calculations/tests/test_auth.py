"""Tokens: hashed at rest, read/write scope, expiry; the admin is staff-only."""

from __future__ import annotations

from datetime import timedelta

from django.test import Client

from calculations import auth
from calculations.actions import do_create_api_token, hash_token
from calculations.models import ApiToken
from conftest import ApiClient
from emgapiv2.config import get_settings


def test_tokens_are_stored_only_as_hashes(db: None) -> None:
    token = do_create_api_token("dora")
    stored = ApiToken.objects.get(user__username="dora")
    assert stored.token_sha256 == hash_token(token) and token not in (stored.token_sha256, stored.prefix)


def test_a_read_only_token_reads_but_cannot_write(db: None) -> None:
    reader = ApiClient(do_create_api_token("erin", can_write=False))
    assert reader.get("/files").status_code == 200
    refused = reader.upload("g.fna", b">c\nACGT\n")
    assert refused.status_code == 403 and "read-only" in refused.json()["detail"]
    assert reader.post("/tools/obabel/calculations", {"inputs": {}, "params": {}}).status_code == 403


def test_an_expired_token_is_refused(db: None) -> None:
    expired = ApiClient(do_create_api_token("fred", expires_in=timedelta(seconds=-1)))
    answer = expired.get("/files")
    assert answer.status_code == 401 and "unexpired token" in answer.json()["detail"]
    assert ApiClient(do_create_api_token("fred", expires_in=timedelta(days=1))).get("/files").status_code == 200


def test_the_admin_is_for_staff_only(db: None, alice: ApiClient) -> None:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.get(username="alice")
    client = Client()
    client.force_login(user)
    assert client.get("/admin/").status_code == 302  # a plain user is sent to the login page
    user.is_staff = True
    user.save()
    assert client.get("/admin/").status_code == 200


def test_a_tokens_use_is_recorded_at_most_once_a_minute(db: None) -> None:
    client = ApiClient(do_create_api_token("gina"))
    assert ApiToken.objects.get(user__username="gina").last_used_at is None
    assert client.get("/files").status_code == 200
    first_use = ApiToken.objects.get(user__username="gina").last_used_at
    assert first_use is not None  # operators see which tokens are alive
    client.get("/files")
    assert ApiToken.objects.get(user__username="gina").last_used_at == first_use  # no write per request
    ApiToken.objects.filter(user__username="gina").update(last_used_at=first_use - timedelta(minutes=2))
    auth._cache.clear()  # as the few seconds a valid token is remembered would have passed
    client.get("/files")
    latest = ApiToken.objects.get(user__username="gina").last_used_at
    assert latest is not None and latest > first_use - timedelta(minutes=2)


def test_admin_logins_are_throttled(db: None) -> None:
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_superuser("root", "root@localhost", "the-right-one")
    client = Client()
    limit = get_settings().admin_login.failure_limit
    answers = [client.post("/admin/login/", {"username": "root", "password": f"guess-{n}"}) for n in range(limit)]
    assert [a.status_code for a in answers] == [200] * (limit - 1) + [429]  # the form again, then the lockout
    locked = client.post("/admin/login/", {"username": "root", "password": "the-right-one"})
    assert locked.status_code == 429 and "try again in" in locked.content.decode()
    assert "_auth_user_id" not in client.session  # the right password did not get in during the lockout
