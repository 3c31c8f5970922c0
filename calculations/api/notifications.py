"""Notifications a user's runs asked for (each delivery and its attempts), and the user's webhook
secret that signs them. Another user's notification answers as a missing one (404)."""

from uuid import UUID

from django.db.models import QuerySet
from ninja import Query, Router
from ninja.pagination import paginate

from calculations.actions import do_ensure_webhook_secret, do_rotate_webhook_secret
from calculations.api.pagination import BoundedLimitOffsetPagination
from calculations.api.requests import AuthedRequest
from calculations.errors import Forbidden, NotFound
from calculations.models import Notification, WebhookSecret
from calculations.schemas import ErrorOut, NotificationFilters, NotificationOut, WebhookSecretOut

notifications_router = Router(tags=["notifications"])
users_router = Router(tags=["users"])


def _visible(request: AuthedRequest) -> QuerySet[Notification]:
    return Notification.objects.filter(owner_id=request.auth.id)


@notifications_router.get("", response=list[NotificationOut], operation_id="list_notifications")
@paginate(BoundedLimitOffsetPagination)
def list_notifications(request: AuthedRequest, filters: Query[NotificationFilters]) -> QuerySet[Notification]:
    """Your notifications, newest first; filter by `run` (a calculation's or workflow run's id) and `status`."""
    return filters.filter(_visible(request))


@notifications_router.get(
    "/{notification_id}", response={200: NotificationOut, 404: ErrorOut}, operation_id="get_notification"
)
def get_notification(request: AuthedRequest, notification_id: UUID) -> Notification:
    """One notification: its attempts, the receiver's last answer, and why it was given up if it was."""
    found = _visible(request).filter(id=notification_id).first()
    if found is None:
        raise NotFound(f"notification {notification_id} not found")
    return found


def _writer_only(request: AuthedRequest) -> None:
    # whoever holds the secret can forge your notifications: a read-only token (a dashboard's) may not read it
    token = getattr(request, "api_token", None)
    if token is None or not token.can_write:
        raise Forbidden("a read-only token cannot read the webhook secret: use a token with write access")


@users_router.get(
    "/me/webhook-secret", response={200: WebhookSecretOut, 403: ErrorOut}, operation_id="get_webhook_secret"
)
def get_webhook_secret(request: AuthedRequest) -> WebhookSecret:
    """Your webhook secret (made now if you had none): verify each notification's X-Emgapi-Signature with it."""
    _writer_only(request)
    return do_ensure_webhook_secret(request.auth.id)


@users_router.post(
    "/me/webhook-secret", response={200: WebhookSecretOut, 403: ErrorOut}, operation_id="rotate_webhook_secret"
)
def rotate_webhook_secret(request: AuthedRequest) -> WebhookSecret:
    """Replace your webhook secret: every delivery from now on, retries included, is signed with the new one."""
    _writer_only(request)
    return do_rotate_webhook_secret(request.auth.id)
