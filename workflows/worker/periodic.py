"""Each service of the worker is a coroutine that does one pass every so often, for as long as the
worker runs: a pass that fails is logged, and the next one comes on time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import NoReturn


async def every(
    seconds: float,
    one_pass: Callable[[], Awaitable[object]],
    *,
    failed: str,
    logger: logging.Logger,
    level: int = logging.ERROR,
) -> NoReturn:
    """Run `one_pass`, then again every `seconds`, until cancelled; a pass that raised is logged
    (`failed`, with its traceback, at `level`)."""
    while True:
        try:
            await one_pass()
        except Exception:
            logger.log(level, "%s; retrying", failed, exc_info=True)
        await asyncio.sleep(seconds)
