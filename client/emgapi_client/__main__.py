"""`python -m emgapi_client`: the `emgapi` command line."""

from emgapi_client.cli import main

main()
