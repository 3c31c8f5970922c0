"""Links to the Django admin's pages as an operator's browser reaches them (under EMGAPI_PUBLIC_URL):
what the dashboard's artifacts and a step's log line point at. The admin is session-authenticated,
so these open in a browser, where the API's URLs would answer 401 without a bearer token.

The paths are Django's admin scheme, written out rather than reversed: the worker then needs no URL
configuration (which imports both APIs); a test checks them against `reverse`."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from emgapiv2.config import get_settings

AdminModel = Literal["calculation", "file", "workflowrun"]


def admin_path(model: AdminModel, object_id: UUID | str) -> str:
    """The path of an object's page in the admin."""
    return f"/admin/calculations/{model}/{object_id}/change/"


def admin_url(model: AdminModel, object_id: UUID | str) -> str:
    """The full URL of an object's page in the admin."""
    return f"{get_settings().public_url.rstrip('/')}{admin_path(model, object_id)}"


def file_download_url(file_id: UUID | str) -> str:
    """A file's bytes, downloaded through the admin (staff only)."""
    return f"{get_settings().public_url.rstrip('/')}/admin/calculations/file/{file_id}/download/"
