"""Prefect's own Kubernetes worker (prefect-kubernetes) on the platform's Kubernetes work pool, in the
cluster (`deployment/kubernetes/`: the flow-worker Deployment runs `python -m workflows.kubernetes_worker`).

It runs each flow run of a workflow deployed with `task deploy-flow FLOW=<name> POOL=kubernetes` as a
Job of the platform's image (`container_runner.py` is its command), with the pool's job template
(`work_pools.kubernetes_base_job_template`). The pool is created first, if no deployment created it yet.
"""

from workflows.prefect_worker import serve


def main() -> None:
    serve("kubernetes")


if __name__ == "__main__":
    main()
