"""Cheap input format checks, run at submission on the first bytes of a file.

They catch the obvious mistakes (an empty file, a FASTA that is not one) with a 422 before any
work is queued; anything subtler is left to the tool, whose own error then ends the run.
"""

from __future__ import annotations

from collections.abc import Callable

HEAD_BYTES = 64 * 1024


class FormatMismatch(ValueError):
    pass


def _text(head: bytes, what: str) -> str:
    if b"\x00" in head:
        raise FormatMismatch(f"is binary, not {what}")
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # a multi-byte character cut by the head limit is fine
            raise FormatMismatch(f"is not UTF-8 text, so not {what}") from exc
        return head[: exc.start].decode("utf-8")


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def check_fasta(head: bytes) -> None:
    text = _text(head, "FASTA")
    if not _first_line(text).startswith(">"):
        raise FormatMismatch("is not FASTA: its first line does not start with '>'")


def check_hmm(head: bytes) -> None:
    text = _text(head, "an HMMER3 profile")
    if not _first_line(text).startswith("HMMER3"):
        raise FormatMismatch("is not an HMMER3 profile: it does not start with 'HMMER3'")


def check_text(head: bytes) -> None:
    _text(head, "text")


FORMAT_CHECKS: dict[str, Callable[[bytes], None]] = {
    "fasta": check_fasta,
    "hmm": check_hmm,
    "text": check_text,
}


def check_format(fmt: str, head: bytes) -> None:
    """Raise FormatMismatch if `head` (the file's first bytes) cannot be of format `fmt`."""
    if not head:
        raise FormatMismatch("is empty")
    FORMAT_CHECKS.get(fmt, check_text)(head)
