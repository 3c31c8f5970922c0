"""Fixtures shared by every app's tests: users, authenticated API clients, uploaded files."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from calculations.actions import do_create_api_token
from demo.synthetic import fasta, genome_with_genes, protein_family


class ApiClient:
    """A Django test client speaking to /api/v2 with a user's bearer token."""

    def __init__(self, token: str | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = Client(headers=headers)

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(f"/api/v2{path}", params)

    def post(self, path: str, json: Any = None) -> Any:
        return self.client.post(f"/api/v2{path}", json if json is not None else {}, content_type="application/json")

    def upload(self, name: str, content: bytes) -> Any:
        return self.client.post("/api/v2/files", {"file": SimpleUploadedFile(name, content)})


@pytest.fixture
def workflow_catalogue(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Stand-in for Prefect's list of deployed workflows (unit tests run no Prefect server; the
    integration tests read the real one): the built-in `pipeline`, with the parameter schema Prefect
    derives from its signature when `task deploy-flow` deploys it."""
    from prefect.utilities.callables import parameter_schema

    from calculations.launching import WorkflowInfo
    from workflows import dispatch
    from workflows.flows.pipeline import pipeline

    catalogue = [
        WorkflowInfo(
            name="pipeline",
            description=pipeline.description or "",
            parameters_schema=parameter_schema(pipeline.fn).model_dump(exclude_unset=True),
        )
    ]
    monkeypatch.setattr(dispatch, "deployed_workflows", lambda: catalogue)
    return catalogue


@pytest.fixture
def alice_token(db: None) -> str:
    return do_create_api_token("alice")


@pytest.fixture
def alice(alice_token: str) -> ApiClient:
    return ApiClient(alice_token)


@pytest.fixture
def bob(db: None) -> ApiClient:
    return ApiClient(do_create_api_token("bob"))


@pytest.fixture
def anonymous() -> ApiClient:
    return ApiClient(None)


@pytest.fixture
def alice_id(alice: ApiClient) -> int:
    return get_user_model().objects.get(username="alice").id


@pytest.fixture
def genome() -> bytes:
    """A 40 kbp seeded genome with 3 planted genes (enough for prodigal's single mode)."""
    rng = random.Random(7)
    return fasta({"contig_1": genome_with_genes(rng, protein_family(rng, length=200, members=3, identity=0.8),
                                                length=40_000)}).encode()  # fmt: skip


@pytest.fixture
def uploaded(alice: ApiClient) -> Callable[[str, bytes], str]:
    def upload(name: str, content: bytes) -> str:
        response = alice.upload(name, content)
        assert response.status_code == 201, response.content
        return str(response.json()["id"])

    return upload
