from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from calculations.actions import do_create_api_token


class Command(BaseCommand):
    help = "Create an API token for USER (creating the user if needed) and print it on one line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(do_create_api_token(options["username"]))
