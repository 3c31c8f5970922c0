"""Register flows as deployments: `task deploy-flow FLOW=<name|all> [FILE=<file>] [POOL=docker|kubernetes]`
(`python -m workflows.deploy`); remove one: `task undeploy-flow FLOW=<name>` (`--undeploy`).

A flow of your own lives in `workflows/flows/<name>.py` as the function `<name>` (or FILE=<file>
FLOW=<function> when they differ); `FLOW=all` deploys every flow there. Each is deployed under its
flow's name and tagged as a workflow users may launch (POST /api/v2/workflows/<flow name>/runs); the
platform's own flows are deployed untagged. Only async flows go to the calculation work pool (the
worker runs them in its event loop); a sync one goes to the Docker work pool (POOL=docker), or, on
Kubernetes (deployment/kubernetes/), to the Kubernetes work pool (POOL=kubernetes: a Job per run). Deploying
again takes effect for the next run, with no worker restart. The platform's own flows cannot be
undeployed. What deploying does: `workflows/orchestration/deployments.py`.
"""

from __future__ import annotations

import argparse
import os

import django


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "emgapiv2.settings")
    django.setup()
    # imported once Django is set up: the flows import its models, and Prefect reads the
    # PREFECT_API_URL that the settings give
    from workflows.orchestration.deployments import DeployError, deploy, undeploy

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("flows", nargs="+", help="flow names (function names, or run-calculation), or 'all'")
    parser.add_argument("--file", help="the flow's file in workflows/flows/, when not named after the flow")
    parser.add_argument(
        "--pool",
        default="calculations",
        choices=("calculations", "docker", "kubernetes"),
        help="'calculations' (in-process; default), 'docker' (a container per run) or 'kubernetes' (a Job per run)",
    )
    parser.add_argument("--undeploy", action="store_true", help="remove the flows' deployments instead")
    args = parser.parse_args()
    if args.undeploy:
        for name in args.flows:
            try:
                removed = undeploy(name)
            except DeployError as exc:
                raise SystemExit(f"undeploy-flow: {exc}") from None
            print(f"undeployed {removed}")
        return
    try:
        deployed = deploy(args.flows, file=args.file, pool=args.pool)
    except DeployError as exc:
        raise SystemExit(f"deploy-flow: {exc}") from None
    for full_name in deployed:
        print(f"deployed {full_name}")


if __name__ == "__main__":
    main()
