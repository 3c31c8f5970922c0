"""Build the container image of every registered tool (`task images`).

Each tool's Dockerfile takes its base image as the build argument BASE_IMAGE: a public Debian
image in real deployments, a locally built one (`scripts/base-image.sh`) where no registry is
reachable. Works against a Docker engine or Podman's compatible socket (DOCKER_HOST).

    python -m workflows.images [--base IMAGE] [--force] [tool ...]
    python -m workflows.images --app [--base IMAGE] [--force]   (the platform's image: deployment/app/Dockerfile)

The platform's own image serves the compose stack and the Docker work pool's flow runs.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

DEFAULT_BASE = "debian:bookworm-slim"


def _client() -> Any:
    import docker

    from emgapiv2.config import get_settings

    host = get_settings().container.docker_host
    return docker.DockerClient(base_url=host, timeout=600) if host else docker.from_env(timeout=600)


def build_images(base_image: str, names: list[str] | None = None, *, force: bool = False) -> dict[str, str]:
    """Build (or, unless `force`, keep) each tool's image; return image name -> image id."""
    import docker

    from calculations.tools import get_registry

    client = _client()
    built: dict[str, str] = {}
    for spec in sorted(get_registry().values(), key=lambda s: s.name):
        if spec.image is None or (names and spec.name not in names):
            continue
        if not force:
            try:
                built[spec.image.name] = client.images.get(spec.image.name).id
                print(f"{spec.image.name}: present ({built[spec.image.name][:19]})", flush=True)
                continue
            except docker.errors.ImageNotFound:
                pass
        started = time.monotonic()
        print(f"{spec.image.name}: building from {spec.image.context} on {base_image} …", flush=True)
        try:
            image, _ = client.images.build(
                path=str(spec.image.context), tag=spec.image.name, buildargs={"BASE_IMAGE": base_image}, rm=True
            )
        except docker.errors.BuildError as exc:
            log = "".join(str(line.get("stream", line.get("error", ""))) for line in exc.build_log)
            raise SystemExit(f"{spec.image.name}: build failed: {exc.msg}\n{log[-3000:]}") from None
        built[spec.image.name] = image.id
        print(f"{spec.image.name}: built in {time.monotonic() - started:.0f} s ({image.id[:19]})", flush=True)
    return built


def build_app_image(base_image: str, *, force: bool = False) -> str:
    """The platform's image (`workflow.docker_image`, deployment/app/Dockerfile), unless present."""
    import docker

    from emgapiv2.config import BASE_DIR, get_settings

    client, tag = _client(), get_settings().workflow.docker_image
    if not force:
        try:
            image_id = str(client.images.get(tag).id)
            print(f"{tag}: present ({image_id[:19]})", flush=True)
            return image_id
        except docker.errors.ImageNotFound:
            pass
    started = time.monotonic()
    print(f"{tag}: building from deployment/app/Dockerfile on {base_image} (a few minutes, cold) …", flush=True)
    try:
        image, _ = client.images.build(
            path=str(BASE_DIR), dockerfile="deployment/app/Dockerfile", tag=tag,
            buildargs={"BASE_IMAGE": base_image}, rm=True,
        )  # fmt: skip
    except docker.errors.BuildError as exc:
        log = "".join(str(line.get("stream", line.get("error", ""))) for line in exc.build_log)
        raise SystemExit(f"{tag}: build failed: {exc.msg}\n{log[-3000:]}") from None
    print(f"{tag}: built in {time.monotonic() - started:.0f} s ({image.id[:19]})", flush=True)
    return str(image.id)


def main(argv: list[str] | None = None) -> None:
    import django

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tools", nargs="*", help="only these tools (default: all with an image)")
    parser.add_argument("--base", default=os.environ.get("BASE_IMAGE") or DEFAULT_BASE, help="base image")
    parser.add_argument("--force", action="store_true", help="rebuild images that exist")
    parser.add_argument("--app", action="store_true", help="the platform's image instead of the tools'")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "emgapiv2.settings")
    django.setup()
    if args.app:
        build_app_image(args.base, force=args.force)
    else:
        build_images(args.base, args.tools or None, force=args.force)


if __name__ == "__main__":
    main()
