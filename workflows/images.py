"""Build the container image of every registered tool (`task images`), and the platform's own.

Each tool's Dockerfile takes its base image as the build argument BASE_IMAGE: a public Debian
image in real deployments, a locally built one (`scripts/base-image.sh`) where no registry is
reachable. Works against a Docker engine or Podman's compatible socket (DOCKER_HOST).

    python -m workflows.images [--base IMAGE] [--from ENGINE] [--force] [tool ...]
    python -m workflows.images --app [--base IMAGE] [--force]   (the platform's image: deployment/app/Dockerfile)

An image is labelled with the sha256 of what built it: the files of its build context (as the
engine receives them, .dockerignore applied), its Dockerfile's path and its build arguments. An
image whose label matches is kept; one whose context changed is rebuilt. With `--from ENGINE`
(another engine's DOCKER_HOST), an image that engine holds with the matching label is copied over
(`docker save | docker load`, through the API) instead of being built again.

The platform's own image serves the compose stack and the Docker work pool's flow runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import django
import docker
from docker.utils.build import exclude_paths

from calculations.errors import Unavailable
from calculations.tools import get_registry
from emgapiv2.config import BASE_DIR, get_settings

DEFAULT_BASE = "debian:bookworm-slim"
LOCAL_BASE = "emgapi/base:bookworm"  # scripts/base-image.sh makes it, where a build needs it
CONTEXT_LABEL = "org.emgapi.build-context-sha256"
BYTECODE = ["**/__pycache__", "**/*.pyc"]


@dataclass(frozen=True)
class Engine:
    """A Docker-API engine: its DOCKER_HOST (None: the environment's) and a client of it."""

    host: str | None
    client: Any


def engine(host: str | None = None) -> Engine:
    """The engine at `host`, else the platform's (`container.docker_host`), else DOCKER_HOST's."""

    host = host or get_settings().container.docker_host
    client = docker.DockerClient(base_url=host, timeout=600) if host else docker.from_env(timeout=600)
    return Engine(host or os.environ.get("DOCKER_HOST"), client)


def context_digest(context: Path, dockerfile: str, buildargs: dict[str, str]) -> str:
    """sha256 of what a build of `context` depends on: each file the engine would receive (path,
    executable bit, content; a link as its target), the Dockerfile's path and the build arguments."""

    ignore = context / ".dockerignore"
    patterns = [line.strip() for line in ignore.read_text().splitlines()] if ignore.exists() else []
    # bytecode never decides a build (a tool's context is its package, where Python may write some)
    patterns = [pattern for pattern in patterns if pattern and not pattern.startswith("#")] + BYTECODE
    digest = hashlib.sha256(json.dumps({"dockerfile": dockerfile, "buildargs": buildargs}, sort_keys=True).encode())
    for name in sorted(exclude_paths(str(context), patterns, dockerfile)):
        path = context / name
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            digest.update(f"{name}\0link\0{os.readlink(path)}\0".encode())
        elif stat.S_ISREG(mode):
            digest.update(f"{name}\0{'x' if mode & stat.S_IXUSR else '-'}\0{path.stat().st_size}\0".encode())
            with path.open("rb") as file:
                for chunk in iter(lambda: file.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def ensure_image(
    target: Engine,
    tag: str,
    context: Path,
    base_image: str,
    *,
    dockerfile: str = "Dockerfile",
    force: bool = False,
    source: Engine | None = None,
) -> str:
    """The image `tag` in `target`, built from `context` as it is now: kept if its label matches,
    else copied from `source` if that engine has it so labelled, else built. Returns its id."""

    buildargs = {"BASE_IMAGE": base_image}
    digest = context_digest(context, dockerfile, buildargs)
    if not force:
        if (found := _labelled(target, tag, digest)) is not None:
            print(f"{tag}: present, context unchanged ({found.id[:19]})", flush=True)
            return str(found.id)
        if source is not None and (found := _labelled(source, tag, digest)) is not None:
            started = time.monotonic()
            target.client.images.load(found.save(named=tag))  # streamed: the archive is never held whole
            image_id = str(target.client.images.get(tag).id)
            print(
                f"{tag}: copied from {source.host} in {time.monotonic() - started:.0f} s ({image_id[:19]})", flush=True
            )
            return image_id
    _ensure_local_base(target, base_image)
    started = time.monotonic()
    print(f"{tag}: building from {context / dockerfile} on {base_image} …", flush=True)
    try:
        image, _ = target.client.images.build(
            path=str(context), dockerfile=dockerfile, tag=tag, buildargs=buildargs, labels={CONTEXT_LABEL: digest},
            rm=True,
        )  # fmt: skip
    except docker.errors.BuildError as exc:
        log = "".join(str(line.get("stream", line.get("error", ""))) for line in exc.build_log)
        raise SystemExit(f"{tag}: build failed: {exc.msg}\n{log[-3000:]}") from None
    print(f"{tag}: built in {time.monotonic() - started:.0f} s ({image.id[:19]})", flush=True)
    return str(image.id)


def _ensure_local_base(target: Engine, base_image: str) -> None:
    """The local Debian base, imported into the engine before the first build that needs it (its
    debootstrap takes ~40 s once per checkout; an image copied from another engine needs none)."""

    if base_image != LOCAL_BASE:
        return
    try:
        target.client.images.get(base_image)
    except docker.errors.ImageNotFound:
        subprocess.run([str(BASE_DIR / "scripts" / "base-image.sh"), *([target.host] if target.host else [])],
                       stdout=subprocess.DEVNULL, check=True)  # fmt: skip


def _labelled(engine: Engine, tag: str, digest: str) -> Any:
    """The engine's image `tag` if it was built from the context with this digest, else None."""

    try:
        image = engine.client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None
    return image if (image.labels or {}).get(CONTEXT_LABEL) == digest else None


def build_images(
    base_image: str, names: list[str] | None = None, *, force: bool = False, source: str | None = None
) -> dict[str, str]:
    """Each tool's image, built, kept or copied as `ensure_image` decides; returns image name -> id."""

    target, source_engine = engine(), engine(source) if source else None
    built: dict[str, str] = {}
    for spec in sorted(get_registry().values(), key=lambda s: s.name):
        if spec.image is None or (names and spec.name not in names) or spec.image.name in built:
            continue  # (tools may share an image)
        built[spec.image.name] = ensure_image(
            target, spec.image.name, spec.image.context, base_image, force=force, source=source_engine
        )
    return built


def build_app_image(base_image: str, *, force: bool = False) -> str:
    """The platform's image (`workflow.docker_image`, deployment/app/Dockerfile; its context is the
    checkout, so a cold build takes minutes and a changed file rebuilds from the COPY on)."""

    tag = get_settings().workflow.docker_image
    return ensure_image(engine(), tag, BASE_DIR, base_image, dockerfile="deployment/app/Dockerfile", force=force)


def current_image_id(image: str) -> str | None:
    """The id the platform's engine holds under `image`, None if it holds none: what a rerun checks
    its original's image digest against (`calculations/images.py`). Unavailable if it cannot be asked."""

    host = get_settings().container.docker_host
    try:
        client = docker.DockerClient(base_url=host, timeout=10) if host else docker.from_env(timeout=10)
        try:
            return str(client.images.get(image).id)
        finally:
            client.close()
    except docker.errors.ImageNotFound:
        return None
    except Exception as exc:  # docker-py raises bare Exceptions quoting the engine's answer: keep it out
        raise Unavailable(
            f"the container engine could not be asked about image {image} ({type(exc).__name__})"
        ) from None


def main(argv: list[str] | None = None) -> None:

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tools", nargs="*", help="only these tools (default: all with an image)")
    parser.add_argument("--base", default=os.environ.get("BASE_IMAGE") or DEFAULT_BASE, help="base image")
    parser.add_argument("--force", action="store_true", help="rebuild images whose context is unchanged")
    parser.add_argument("--app", action="store_true", help="the platform's image instead of the tools'")
    parser.add_argument("--from", dest="source", metavar="ENGINE", help="copy matching images from this engine")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "emgapiv2.settings")
    django.setup()
    if args.app:
        build_app_image(args.base, force=args.force)
    else:
        build_images(args.base, args.tools or None, force=args.force, source=args.source)


if __name__ == "__main__":
    main()
