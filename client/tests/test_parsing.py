"""What the CLI makes of its arguments before any request: parameter values, local paths in workflow
parameters and pipelines, server-given file names, and what a log tail adds to the previous one; and
how it shows what the server gives: argv relative to its work directory, times in the local zone."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import typer
from emgapi_client.cli import parse_params, upload_marked_files, upload_pipeline_files
from emgapi_client.cli.common import duration, relative_argv, when
from emgapi_client.errors import UnsafeFileName
from emgapi_client.transfers import MAX_NAME_BYTES, distinct_name, safe_file_name, target_in, unseen_text

FILE_ID = "0b6f3c1e-9f1d-4c1b-8a53-3a1e2d4c5b6a"


def test_param_values_are_json_when_they_parse_and_strings_otherwise() -> None:
    params = parse_params(["mode=meta", "evalue=1e-5", "cpus=4", "gen3d=true", 'name="5"', "x=[1, 2]", "eq=a=b"])
    assert params == {"mode": "meta", "evalue": 1e-5, "cpus": 4, "gen3d": True, "name": "5", "x": [1, 2], "eq": "a=b"}
    assert parse_params(["g=a", "g=b", "g=c"]) == {"g": ["a", "b", "c"]}
    with pytest.raises(typer.BadParameter, match="NAME=VALUE"):
        parse_params(["novalue"])
    # JSON has no infinities: a number too large to be finite is a usage error, NaN stays a string
    with pytest.raises(typer.BadParameter, match="not a finite number"):
        parse_params(["evalue=1e400"])
    assert parse_params(["x=NaN", "y=-Infinity"]) == {"x": "NaN", "y": "-Infinity"}


def test_local_paths_in_file_parameters_become_the_ids_of_their_uploads(tmp_path: Path) -> None:
    genome = tmp_path / "genome.fna"
    genome.write_text(">c\nACGT\n")
    # the shape Prefect gives `genomes: list[FileId], profile: FileId, mode: str`
    schema = {
        "type": "object",
        "properties": {
            "genomes": {"type": "array", "items": {"$ref": "#/definitions/FileId"}},
            "profile": {"anyOf": [{"$ref": "#/definitions/FileId"}, {"type": "null"}]},
            "mode": {"type": "string"},
        },
        "definitions": {"FileId": {"type": "string", "format": "uuid", "x-emgapi-file": True}},
    }
    uploaded: list[Path] = []

    def upload(path: Path) -> str:
        uploaded.append(path)
        return f"id-of-{path.name}"

    params = {"genomes": [str(genome), FILE_ID], "profile": str(genome), "mode": str(genome)}
    assert upload_marked_files(schema, params, schema, upload) == {
        "genomes": ["id-of-genome.fna", FILE_ID],
        "profile": "id-of-genome.fna",
        "mode": str(genome),  # not a file parameter: a string that happens to be a path stays one
    }
    assert uploaded == [genome, genome]  # (the CLI's uploader uploads a path once)


def test_pipeline_file_paths_are_relative_to_the_pipeline_and_ids_stay(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "genome.fna").write_text(">c\nACGT\n")
    (tmp_path / "data" / "family.hmm").write_text("HMMER3/f\n")
    pipeline = {"steps": {
        "genes": {"tool": "prodigal", "inputs": {"contigs": {"each": ["file:genome.fna", f"file:{FILE_ID}"]}}},
        "hits": {"tool": "hmmsearch", "inputs": {"profile": "file:data/../data/family.hmm",
                                                  "sequences": "genes.proteins"}},
    }}  # fmt: skip
    replaced = upload_pipeline_files(pipeline, tmp_path, lambda path: f"up-{path.name}")
    assert replaced["steps"]["genes"]["inputs"] == {"contigs": {"each": ["file:up-genome.fna", f"file:{FILE_ID}"]}}
    assert replaced["steps"]["hits"]["inputs"] == {"profile": "file:up-family.hmm", "sequences": "genes.proteins"}
    with pytest.raises(typer.BadParameter, match=r"steps\.genes\.inputs: 'missing.fna'"):
        upload_pipeline_files({"steps": {"genes": {"inputs": {"c": "file:missing.fna"}}}}, tmp_path, str)


@pytest.mark.parametrize("reference", ["absolute", "../outside.txt", "data/../../outside.txt", "link.txt", "~/x"])
def test_a_pipeline_cannot_make_its_user_upload_a_file_outside_its_directory(tmp_path: Path, reference: str) -> None:
    (tmp_path / "outside.txt").write_text("a secret")
    base = tmp_path / "pipeline"
    (base / "data").mkdir(parents=True)
    (base / "link.txt").symlink_to(tmp_path / "outside.txt")  # a link shipped with the pipeline
    target = str(tmp_path / "outside.txt") if reference == "absolute" else reference
    uploaded: list[Path] = []

    def upload(path: Path) -> str:
        uploaded.append(path)
        return FILE_ID

    with pytest.raises(typer.BadParameter, match="pipeline's directory") as refused:
        upload_pipeline_files({"steps": {"s": {"inputs": {"r": f"file:{target}"}}}}, base, upload)
    assert refused.value.param_hint == "FILE" and uploaded == []


def test_a_server_given_name_cannot_leave_the_download_directory() -> None:
    assert safe_file_name("proteins.faa", "x") == "proteins.faa"
    assert safe_file_name("../../etc/passwd", "x") == "passwd"
    assert safe_file_name("/abs/path.txt", "x") == "path.txt"
    assert safe_file_name("..\\win.txt", "x") == "win.txt"
    assert safe_file_name("..", "fallback") == "fallback"
    assert safe_file_name("../", "fallback") == "fallback"
    assert safe_file_name("a\x1b]52;c;eA==\x07\u009b.txt", "x") == "a_]52;c;eA==__.txt"  # printed later
    long = safe_file_name("n" * 300 + ".fastq", "x")
    assert long.endswith("n.fastq") and len(long.encode()) == MAX_NAME_BYTES
    assert len(safe_file_name("é" * 300, "x").encode()) <= MAX_NAME_BYTES  # never half a character


def test_outputs_sharing_a_name_get_distinct_safe_ones() -> None:
    taken: set[str] = set()
    names = [distinct_name(safe_file_name(name, "id"), role, taken) for role, name in [
        ("a", "out.txt"), ("../../b", "out.txt"), ("/abs", "Out.txt"), ("../../b", "out.txt"),
        ("x" * 300, "out.txt"), ("x" * 300, "out.txt"),
    ]]  # fmt: skip
    assert names[:4] == ["out.txt", "b-out.txt", "abs-Out.txt", "b-2-out.txt"]
    assert len({name.casefold() for name in names}) == len(names)
    assert all("/" not in name and len(name.encode()) <= MAX_NAME_BYTES for name in names)


def test_a_name_is_checked_against_the_directory_once_resolved(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert target_in(tmp_path / "link", "a.txt") == tmp_path / "link" / "a.txt"  # the directory asked for
    with pytest.raises(UnsafeFileName):
        target_in(tmp_path, "../a.txt")
    with pytest.raises(UnsafeFileName):
        target_in(tmp_path, "sub/a.txt")


def test_what_a_log_tail_adds_to_the_previous_one() -> None:
    assert unseen_text("", "abc") == "abc"
    assert unseen_text("abc", "abcdef") == "def"
    assert unseen_text("abcdef", "cdefgh") == "gh"  # the window slid: its start was cut
    assert unseen_text("abcdef", "abcdef") == ""
    assert unseen_text("aaaa", "aaab") == "b"  # the overlap is the longest one
    assert unseen_text("abc", "xyz") == "xyz"  # more than a window was written between the reads


def test_only_http_urls_name_the_platform() -> None:
    from emgapi_client.client import normalise_url
    from emgapi_client.errors import InvalidUrl

    assert normalise_url("127.0.0.1:8000/api/v2/") == "http://127.0.0.1:8000"
    with pytest.raises(InvalidUrl, match="not an http"):
        normalise_url("ftp://example.org")


def test_an_argv_is_shown_relative_to_its_work_directory() -> None:
    workdir = "/data/calculations/1b2c/attempt-1/work"
    argv = ["prodigal", "-i", "../inputs/contigs/contigs.fna", "-a", f"{workdir}/proteins.faa",
            f"--out={workdir}", f"{workdir}space/x", "/data/calculations/1b2c/attempt-1/inputs/p/p.hmm"]  # fmt: skip
    assert relative_argv(argv, workdir) == [
        "prodigal", "-i", "../inputs/contigs/contigs.fna", "-a", "proteins.faa",
        "--out=.", "../workspace/x", "../inputs/p/p.hmm",
    ]  # fmt: skip
    assert relative_argv(["/work/x"], "/work") == ["/work/x"]  # too short a directory to tell


def test_times_are_shown_in_the_local_time_zone_with_its_offset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        assert when("2026-12-04T12:00:01.5Z") == "2026-12-04 17:30:01+05:30"
        assert when(None) == "-"

        def ran(started_at: str | None, finished_at: str | None) -> str:
            times: Any = {"started_at": started_at, "finished_at": finished_at}
            return duration(times)

        assert ran("2026-12-04T12:00:00Z", "2026-12-04T12:02:05.4+00:00") == "2 min 05 s"
        assert ran("2026-12-04T12:00:00Z", "2026-12-04T12:00:03.25Z") == "3.2 s"
        assert ran("2026-12-04T12:00:00Z", None) == "running"
        assert ran(None, "2026-12-04T12:00:03Z") == "never started"  # canceled while it was queued
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
