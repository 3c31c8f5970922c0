"""A receiver checks a notification with `verify_signature`: what the platform signed passes, and a
body changed on the way, another secret or no header does not."""

from __future__ import annotations

from emgapi_client import verify_signature

from calculations.notifications import sign


def test_a_receiver_accepts_what_the_platform_signed_and_nothing_else() -> None:
    body = b'{"id":"c0ffee","state":"COMPLETE"}'
    header = sign("whsec_one", body)
    assert verify_signature("whsec_one", body, header)
    assert not verify_signature("whsec_one", body.replace(b"COMPLETE", b"CANCELED"), header)
    assert not verify_signature("whsec_two", body, header)
    assert not verify_signature("whsec_one", body, None)
