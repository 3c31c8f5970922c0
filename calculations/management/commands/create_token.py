from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from calculations.actions import do_create_api_token, do_set_user_quota


class Command(BaseCommand):
    help = "Create an API token for USER (creating the user if needed) and print it on one line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--read-only", action="store_true", help="the token can only read (GET)")
        parser.add_argument("--expires-in-days", type=float, default=None, help="unset: never expires")
        parser.add_argument(
            "--max-active-calculations", type=int, default=None, help="the user's own limit (unset: the deployment's)"
        )
        parser.add_argument("--storage-bytes", type=int, default=None, help="the user's own storage quota")

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["expires_in_days"]
        if options["max_active_calculations"] is not None or options["storage_bytes"] is not None:
            do_set_user_quota(
                options["username"],
                max_active_calculations=options["max_active_calculations"],
                storage_bytes=options["storage_bytes"],
            )
        token = do_create_api_token(
            options["username"],
            can_write=not options["read_only"],
            expires_in=timedelta(days=days) if days is not None else None,
        )
        self.stdout.write(token)
