"""Prefect's own Docker worker (prefect-docker) on the platform's Docker work pool: `task worker-docker`.

It runs each flow run of a workflow deployed with `task deploy-flow FLOW=<name> POOL=docker` in a
container of the platform's image (`container_runner.py` is the container's command). The pool is
created first, with prefect-docker's job template, if no deployment created it yet.
"""

from workflows.prefect_worker import serve


def main() -> None:
    serve("docker")


if __name__ == "__main__":
    main()
