"""Prefect flows, one per file; `workflows/deploy.py` names the ones `task deploy-flow FLOW=…` accepts."""
