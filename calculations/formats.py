"""Cheap input format checks, run at submission on the first bytes of a file.

They catch the obvious mistakes (an empty file, a FASTA that is not one) with a 422 before any
work is queued; anything subtler is left to the tool, whose own error then ends the run. A format
whose damage the tool would not report (a truncated HMM profile makes hmmsearch find nothing, which
reads as a real negative result) also has a whole-file check, streamed: `check_whole_file`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

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


def _lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Text lines of a streamed file, one at a time (a file of any size in constant memory)."""
    rest = b""
    for chunk in chunks:
        rest += chunk
        *complete, rest = rest.split(b"\n")
        for line in complete:
            yield line.decode("utf-8", errors="replace").rstrip("\r")
    if rest:
        yield rest.decode("utf-8", errors="replace")


HMM_REQUIRED_HEADER = ("NAME", "LENG", "ALPH")


def check_hmm_complete(chunks: Iterable[bytes]) -> None:
    """Every model of an HMMER3 profile file is whole: its header names NAME, LENG and ALPH, its
    matrix has LENG nodes, and it ends with `//`. A truncated profile otherwise makes hmmsearch
    report no hits, which looks like a real negative result."""
    models = 0
    model: dict[str, str] | None = None  # header fields of the model being read
    nodes = -1  # -1: still in the header; then the number of match-state nodes read
    for number, line in enumerate(_lines(chunks), start=1):
        words = line.split()
        if not words:
            continue
        if model is None:
            if not words[0].startswith("HMMER3"):
                raise FormatMismatch(f"is not a complete HMMER3 profile: line {number} starts no model")
            model, nodes = {}, -1
        elif words[0] == "//":
            missing = [field for field in HMM_REQUIRED_HEADER if field not in model]
            if missing:
                raise FormatMismatch(f"is not a complete HMMER3 profile: model {models + 1} lacks {', '.join(missing)}")
            if not model["LENG"].isdigit() or nodes != int(model["LENG"]):
                raise FormatMismatch(
                    f"is not a complete HMMER3 profile: model {model['NAME']!r} declares LENG {model['LENG']} "
                    f"but has {max(nodes, 0)} nodes"
                )
            models, model = models + 1, None
        elif nodes < 0:
            if words[0] == "HMM":
                nodes = 0
            elif len(words) > 1:
                model.setdefault(words[0], words[1])
        elif words[0] == str(nodes + 1):
            nodes += 1
    if model is not None:
        name = model.get("NAME", "?")
        raise FormatMismatch(f"is not a complete HMMER3 profile: model {name!r} is cut short (no closing '//')")
    if not models:
        raise FormatMismatch("is not a complete HMMER3 profile: it holds no model")


# formats whose damage the tool would not report: checked in full at submission, streamed
WHOLE_FILE_CHECKS: dict[str, Callable[[Iterable[bytes]], None]] = {"hmm": check_hmm_complete}


def check_whole_file(fmt: str, chunks: Callable[[], Iterable[bytes]]) -> None:
    """Raise FormatMismatch if the whole file is not a complete `fmt` (only formats that need it)."""
    if (check := WHOLE_FILE_CHECKS.get(fmt)) is not None:
        check(chunks())
