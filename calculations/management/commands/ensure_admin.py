from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from calculations.actions.users import do_ensure_admin
from emgapiv2.config import get_settings


class Command(BaseCommand):
    help = (
        "Make the Django admin's superuser once (its password generated into data_dir/admin-password, 0600; "
        "an existing account is left as it is) and print, on one line, where to sign in and where the password is."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")
        parser.add_argument("--email", default="admin@localhost")

    def handle(self, *args: Any, **options: Any) -> None:
        admin = do_ensure_admin(options["username"], email=options["email"])
        url = f"{get_settings().public_url.rstrip('/')}/admin/"
        if admin.password_in_file:
            where = f"password in {admin.password_file}"
        else:  # made by hand, or its password changed since: the file would mislead
            where = (
                f"its password is not the one in {admin.password_file}; "
                f"set one with: ./taskw manage -- changepassword {admin.username}"
            )
        self.stdout.write(f"{url} (user {admin.username}, {where})")
