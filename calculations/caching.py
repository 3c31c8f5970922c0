"""Cache keys (design brief §7): identical tool, version, parameters and input bytes."""

import hashlib
import json
from collections.abc import Mapping
from typing import Any


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def compute_cache_key(
    *, tool: str, tool_version: str, params: Mapping[str, Any], input_sha256s: Mapping[str, str]
) -> str:
    """sha256 over the canonical JSON of everything that determines a calculation's outputs."""
    payload = {"tool": tool, "version": tool_version, "params": params, "inputs": input_sha256s}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()
