"""`python -m workflows.worker` (`task worker`): the calculation worker."""

from __future__ import annotations

import os

import django


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "emgapiv2.settings")
    django.setup()
    # imported once Django is set up: the worker's modules import its models, and Prefect, which
    # reads the PREFECT_API_URL that the settings give
    from workflows.worker.claim_loop import serve
    from workflows.worker.metrics_listener import start_metrics_listener

    start_metrics_listener()
    serve()


if __name__ == "__main__":
    main()
