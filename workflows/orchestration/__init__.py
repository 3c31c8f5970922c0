"""The Prefect adapter: everything the platform asks of Prefect's server (flow runs, the workflow
catalogue, pauses, work pools, deployments, dashboard artifacts; see workflows/README.md)."""
