"""Registered tools: one subpackage each, declaring `TOOL = ToolSpec(...)` (see calculations/tools.py)."""
