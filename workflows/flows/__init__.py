"""Prefect flows, one per file. `FLOWS` maps the names `task deploy-flow FLOW=…` accepts."""
