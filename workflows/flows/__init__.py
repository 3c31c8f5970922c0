"""Prefect flows, one per file; `workflows/orchestration/deployments.py` names the ones that
`task deploy-flow FLOW=…` accepts."""
