"""Tools that exist only for the tests (a long-running one, to cancel)."""
