from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from calculations.actions import do_create_api_token


class Command(BaseCommand):
    help = "Create an API token for USER (creating the user if needed) and print it on one line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--read-only", action="store_true", help="the token can only read (GET)")
        parser.add_argument("--expires-in-days", type=float, default=None, help="unset: never expires")

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["expires_in_days"]
        token = do_create_api_token(
            options["username"],
            can_write=not options["read_only"],
            expires_in=timedelta(days=days) if days is not None else None,
        )
        self.stdout.write(token)
