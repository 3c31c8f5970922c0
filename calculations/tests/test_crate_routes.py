"""GET /calculations/{id}/crate and /workflow-runs/{id}/crate through the real URL routing: a streamed
zip with its metadata at the root, what ?data= asks for, and 404 for another user's run."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import pytest

from calculations.tests.crate_runs import GENOME, finished_pipeline, finished_tool_calculation, upload
from conftest import ApiClient
from emgapiv2.config import get_settings

pytestmark = pytest.mark.django_db


def _zip(response: Any) -> zipfile.ZipFile:
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"].startswith("attachment;")
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def test_a_calculations_crate_is_a_zip_with_its_metadata_and_its_files(alice: ApiClient, alice_id: int) -> None:
    genome = upload(alice_id, "genome.fna", GENOME)
    calc = finished_tool_calculation(alice_id, "prodigal", {"contigs": genome.id}, {"mode": "meta"})
    archive = _zip(alice.get(f"/calculations/{calc.id}/crate"))
    assert archive.namelist()[0] == "ro-crate-metadata.json"
    assert archive.read("inputs/contigs/genome.fna") == GENOME
    graph = json.loads(archive.read("ro-crate-metadata.json"))["@graph"]
    assert any(entity.get("@type") == "CreateAction" for entity in graph)


def test_data_none_lists_every_file_with_its_sha256_size_and_download_url(alice: ApiClient, alice_id: int) -> None:
    run = finished_pipeline(alice_id)
    archive = _zip(alice.get(f"/workflow-runs/{run.id}/crate", data="none"))
    assert sorted(archive.namelist()) == ["README.md", "pipeline.json", "ro-crate-metadata.json"]
    files = [
        entity
        for entity in json.loads(archive.read("ro-crate-metadata.json"))["@graph"]
        if entity["@type"] == "File" and "sha256" in entity
    ]
    assert len(files) == 2 + 2 + 2  # the genome and the profile; two outputs of each step
    prefix = f"{get_settings().public_url}/api/v2/files/"
    for entity in files:
        assert entity["@id"].startswith(prefix) and entity["@id"].endswith("/content")
        assert len(entity["sha256"]) == 64 and int(entity["contentSize"]) > 0
        # the URL is the owner's download of those very bytes
        file_id = entity["@id"].removeprefix(prefix).removesuffix("/content")
        content = b"".join(alice.get(f"/files/{file_id}/content").streaming_content)
        assert len(content) == int(entity["contentSize"])


def test_another_users_run_has_no_crate_for_them(alice_id: int, bob: ApiClient) -> None:
    genome = upload(alice_id, "genome.fna", GENOME)
    calc = finished_tool_calculation(alice_id, "prodigal", {"contigs": genome.id}, {})
    run = finished_pipeline(alice_id)
    for path in (f"/calculations/{calc.id}/crate", f"/workflow-runs/{run.id}/crate"):
        response = bob.get(path)
        assert response.status_code == 404, path
        assert "not found" in response.json()["detail"]


def test_an_unknown_data_option_is_a_422_naming_it(alice: ApiClient, alice_id: int) -> None:
    run = finished_pipeline(alice_id)
    response = alice.get(f"/workflow-runs/{run.id}/crate", data="everything")
    assert response.status_code == 422
    assert response.json()["detail"].startswith("query.data:") or "data" in response.json()["detail"]
