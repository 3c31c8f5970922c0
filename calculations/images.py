"""The seam through which the actions ask which image a container engine holds under a name (a
rerun must run the image digest its original ran: issue 20). `workflows` registers the lookup that
asks the platform's engine (`workflows/apps.py`), so this app never imports docker or `workflows`."""

from __future__ import annotations

from collections.abc import Callable

from calculations.errors import Unavailable

# an image's name -> the id (content digest, "sha256:…") the engine holds under it, None if it holds
# none; Unavailable if the engine cannot be asked
ImageLookup = Callable[[str], str | None]


def _no_engine(image: str) -> str | None:
    raise Unavailable(f"no container engine is known to this process: cannot tell whether {image} is available")


_lookup: ImageLookup = _no_engine


def register_image_lookup(lookup: ImageLookup) -> ImageLookup:
    """Install `lookup` for this process; return the previous one (tests restore it)."""
    global _lookup
    previous, _lookup = _lookup, lookup
    return previous


def current_image_id(image: str) -> str | None:
    return _lookup(image)
