from typing import Any, TypedDict

from calculations.caching import compute_cache_key


class KeyArgs(TypedDict):
    """compute_cache_key's keyword arguments."""

    tool: str
    tool_version: str
    params: dict[str, Any]
    input_sha256s: dict[str, str]


BASE: KeyArgs = {
    "tool": "prodigal",
    "tool_version": "2.6.3",
    "params": {"mode": "meta", "table": 11},
    "input_sha256s": {"contigs": "a" * 64},
}


def test_key_ignores_parameter_order() -> None:
    reordered: KeyArgs = {**BASE, "params": {"table": 11, "mode": "meta"}}
    assert compute_cache_key(**BASE) == compute_cache_key(**reordered)


def test_key_changes_with_anything_that_changes_the_outputs() -> None:
    variants: list[KeyArgs] = [
        {**BASE, "tool": "hmmsearch"},
        {**BASE, "tool_version": "2.6.4"},
        {**BASE, "params": {"mode": "single", "table": 11}},
        {**BASE, "input_sha256s": {"contigs": "b" * 64}},
        {**BASE, "input_sha256s": {"other_role": "a" * 64}},
    ]
    keys = {compute_cache_key(**variant) for variant in variants} | {compute_cache_key(**BASE)}
    assert len(keys) == len(variants) + 1
