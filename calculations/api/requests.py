"""The request type of the API's authenticated views.

django-ninja sets `request.auth` to what the API's authenticator returned (TokenAuth: the token's
user) and calls a view only once that succeeded, so inside a view `request.auth` is a user, never
None. ninja finds the request parameter by its name, `request`: this annotation is for the type
checker only and changes neither the routing nor the OpenAPI schema.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.http import HttpRequest

if TYPE_CHECKING:
    # the default user model (settings.AUTH_USER_MODEL is unset): what get_user_model() returns
    from django.contrib.auth.models import User


class AuthedRequest(HttpRequest):
    auth: User


def one_file_body(field: str, description: str) -> dict[str, Any]:
    """The OpenAPI `openapi_extra` of a view that reads one multipart file itself rather than through
    a ninja File parameter, so that each way of getting the form wrong has its own message (a ninja
    parameter answers all of them "<field>: Field required")."""
    schema = {
        "type": "object",
        "properties": {field: {"type": "string", "format": "binary", "description": description}},
        "required": [field],
        "additionalProperties": False,
    }
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}
