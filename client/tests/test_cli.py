"""The `emgapi` command line end to end: the installed console script, as a subprocess, against the
real API (a live server on the test database), a real Prefect server and worker, and real tools."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pty
import random
import re
import stat
import subprocess
import sys
import time
import uuid
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from calculations.actions import do_create_api_token
from calculations.models import Calculation
from demo.synthetic import fasta, genome_with_genes, protein_family
from emgapiv2.config import BASE_DIR, get_settings

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
DEMO = BASE_DIR / "demo" / "data"
EMGAPI = Path(sys.executable).parent / "emgapi"
TIME_WITH_ZONE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[+-]\d\d:\d\d")  # as the CLI shows times


class Cli:
    """Runs the installed `emgapi` in a home of its own (its config file goes there)."""

    def __init__(self, url: str, token: str, home: Path) -> None:
        self.url, self.token, self.home = url, token, home
        self.cwd = home / "work"
        self.cwd.mkdir()

    def environment(self, logged_in: bool = True, env: dict[str, str] | None = None) -> dict[str, str]:
        if not EMGAPI.exists():
            pytest.fail(f"{EMGAPI} is missing: scripts/bootstrap.sh installs the client (pip install -e ./client)")
        environment = {name: value for name, value in os.environ.items() if not name.startswith("EMGAPI_")}
        environment |= {"HOME": str(self.home), "XDG_CONFIG_HOME": str(self.home / ".config"), "COLUMNS": "200"}
        if logged_in:
            environment |= {"EMGAPI_URL": self.url, "EMGAPI_TOKEN": self.token}
        return environment | (env or {})

    def __call__(
        self, *args: str, logged_in: bool = True, env: dict[str, str] | None = None, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(EMGAPI), *args],
            cwd=self.cwd,
            env=self.environment(logged_in, env),
            input=input_text,
            capture_output=True,
            encoding="utf-8",
            timeout=180,
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        """`emgapi` running, its stdout read as it writes."""
        return subprocess.Popen(
            [str(EMGAPI), *args], cwd=self.cwd, env=self.environment(), stdout=subprocess.PIPE, encoding="utf-8"
        )

    def json(self, *args: str, **kwargs: Any) -> Any:
        result = self(*args, "--json", **kwargs)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def write(self, name: str, content: bytes) -> Path:
        path = self.cwd / name
        path.write_bytes(content)
        return path


@pytest.fixture
def cli(live_server: Any, calculation_worker: None, dispatching: None, tmp_path: Path) -> Cli:
    return Cli(live_server.url, do_create_api_token("cli-user"), tmp_path)


def _genome(seed: int = 7, length: int = 30_000) -> bytes:
    rng = random.Random(seed)
    family = protein_family(rng, length=220, members=3, identity=0.8)
    return fasta({"c1": genome_with_genes(rng, family, length=length)}).encode()


def test_login_checks_the_token_and_keeps_it_where_only_its_owner_can_read_it(cli: Cli) -> None:
    config = cli.home / ".config" / "emgapi" / "config.json"
    refused = cli("login", "--url", cli.url, "--token", "not-a-token", logged_in=False)
    assert refused.returncode == 6 and "authentication required" in refused.stderr
    assert not config.exists()

    done = cli("login", "--url", f"{cli.url}/api/v2/", "--token", cli.token, logged_in=False)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    assert json.loads(config.read_text()) == {"url": cli.url, "token": cli.token}

    # the stored login serves later commands; the environment overrides it (scripts, CI)
    assert "prodigal" in [tool["name"] for tool in cli.json("tools", logged_in=False)]
    overridden = cli("ls", logged_in=False, env={"EMGAPI_TOKEN": "stale"})
    assert overridden.returncode == 6 and "authentication required" in overridden.stderr
    unreachable = cli("ls", logged_in=False, env={"EMGAPI_URL": "http://127.0.0.1:9"})
    assert unreachable.returncode == 7 and "cannot reach" in unreachable.stderr
    nobody = cli("ls", logged_in=False, env={"XDG_CONFIG_HOME": str(cli.home / "elsewhere")})
    assert nobody.returncode == 2 and "emgapi login" in nobody.stderr


def test_upload_checks_the_sha256_and_download_gives_back_the_same_bytes(cli: Cli) -> None:
    big = cli.write("big.bin", random.Random(1).randbytes(3 * 2**20 + 17))  # several chunks
    small = cli.write("small.fna", b">s\nACGT\n")
    uploaded = cli.json("upload", str(big), str(small))
    assert [(f["name"], f["size"], f["sha256"]) for f in uploaded] == [
        (path.name, path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest()) for path in (big, small)
    ]
    human = cli("upload", str(small))
    assert human.returncode == 0 and uploaded[1]["sha256"] in human.stdout

    saved = cli.json("download", uploaded[0]["id"], "--dir", "back")
    assert saved == [{"file": uploaded[0]["id"], "path": "back/big.bin"}]
    assert (cli.cwd / "back" / "big.bin").read_bytes() == big.read_bytes()
    assert list((cli.cwd / "back").iterdir()) == [cli.cwd / "back" / "big.bin"]  # no partial file left

    missing = cli("upload", "no-such-file.fna")
    assert missing.returncode == 2 and "no-such-file.fna" in missing.stderr


def test_run_prodigal_uploads_waits_and_downloads_the_proteins(cli: Cli) -> None:
    genome = cli.write("genome.fna", _genome())
    result = cli("run", "prodigal", "--input", "contigs=genome.fna", "--param", "mode=single", "--wait",
                 "--download", "out/", "--no-cache")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "COMPLETE" in result.stderr and "out/proteins.faa" in result.stdout

    subprocess.run(["prodigal", "-q", "-i", str(genome), "-a", "bare.faa", "-o", "bare.gff", "-f", "gff",
                    "-p", "single"], cwd=cli.cwd, check=True, capture_output=True)  # fmt: skip
    assert (cli.cwd / "out" / "proteins.faa").read_bytes() == (cli.cwd / "bare.faa").read_bytes()
    assert (cli.cwd / "out" / "genes.gff").exists()

    # again, for a script: the identical calculation answers at once, and the output is JSON
    calc = cli.json("run", "prodigal", "-i", "contigs=genome.fna", "-p", "mode=single", "--download", "again")
    assert calc["state"] == "COMPLETE" and calc["cache_hit"] and calc["params"]["mode"] == "single"
    assert {entry["role"] for entry in calc["downloaded"]} == {"proteins", "genes"}
    assert (cli.cwd / "again" / "proteins.faa").read_bytes() == (cli.cwd / "bare.faa").read_bytes()

    # by file id, without waiting: it prints the id, and `show` and `ls` find it
    file_id = calc["inputs"]["contigs"]
    submitted = cli("run", "prodigal", "-i", f"contigs={file_id}", "-p", "mode=meta")
    assert submitted.returncode == 0, submitted.stderr
    calculation_id = submitted.stdout.strip()
    assert cli.json("show", calculation_id)["params"] == {"mode": "meta", "translation_table": 11}
    assert calculation_id in [c["id"] for c in cli.json("ls", "--tool", "prodigal", "--limit", "5")]
    assert cli("wait", calculation_id).returncode == 0
    downloaded = cli.json("download", calculation_id, "--dir", "meta")
    assert sorted(Path(entry["path"]).name for entry in downloaded) == ["genes.gff", "proteins.faa"]


def test_a_failing_tool_exits_3_with_its_message_and_its_logs_can_be_followed(cli: Cli) -> None:
    cli.write("short.fna", b">s\nACGTACGTAA\n")
    result = cli("run", "prodigal", "--input", "contigs=short.fna", "--wait", "--no-cache")
    assert result.returncode == 3
    assert "EXECUTOR_ERROR" in result.stderr and "Sequence must be 20000 characters" in result.stderr
    calculation_id = cli.json("ls", "--state", "executor_error", "--limit", "1")[0]["id"]

    followed = cli("logs", calculation_id, "--follow", "--stream", "stderr")
    assert followed.returncode == 3  # --follow ends with the calculation, and says how it ended
    tails = cli.json("logs", calculation_id)
    assert "Sequence must be 20000 characters" in tails["stderr"] and followed.stdout == tails["stderr"]
    both = cli("logs", calculation_id)
    assert both.returncode == 0 and both.stderr == tails["stderr"] and both.stdout == tails["stdout"]
    lines = [json.loads(line) for line in cli("logs", calculation_id, "-f", "--json").stdout.splitlines()]
    assert "".join(line["data"] for line in lines if line["stream"] == "stderr") == tails["stderr"]

    shown = cli("show", calculation_id)
    assert shown.returncode == 0 and "EXECUTOR_ERROR" in shown.stdout and "prodigal -q" in shown.stdout
    nothing = cli("download", calculation_id)
    assert nothing.returncode == 6 and "no outputs" in nothing.stderr
    unknown = cli("run", "no-such-tool", "-i", f"x={calculation_id}")
    assert unknown.returncode == 6 and "no-such-tool" in unknown.stderr


def test_logs_follow_prints_a_running_tools_output_as_it_comes_and_every_byte_of_it(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    # small chunks and tails: following takes many requests, and the tail alone would lose the start
    monkeypatch.setattr(get_settings(), "log_chunk_bytes", 4096)
    monkeypatch.setattr(get_settings(), "log_tail_bytes", 1000)
    cli.write("note.txt", b"x\n")
    submitted = cli("run", "chatter", "-i", "text=note.txt", "-p", "lines=300", "-p", "interval_seconds=0.01",
                    "--no-cache")  # fmt: skip
    calculation_id = submitted.stdout.strip()
    follower = cli.start("logs", calculation_id, "--follow", "--stream", "stdout")
    assert follower.stdout is not None
    first = follower.stdout.readline()
    state_at_first_line = Calculation.objects.get(id=calculation_id).state
    rest = follower.stdout.read()
    assert follower.wait(60) == 0  # it ends by itself, with the calculation: COMPLETE
    assert state_at_first_line in {"QUEUED", "INITIALIZING", "RUNNING"}  # live, not read after the end
    assert (first + rest).splitlines() == [f"line {i} ✓ ünïcode" for i in range(300)]
    tails = cli.json("logs", calculation_id)
    assert tails["truncated"] and (first + rest).endswith(tails["stdout"]) and len(tails["stdout"]) < len(rest)


def test_cancel_stops_a_running_calculation_and_wait_says_so(cli: Cli) -> None:
    cli.write("note.txt", b"hello\n")
    calculation_id = cli("run", "sleep", "-i", "text=note.txt", "-p", "seconds=60", "--no-cache").stdout.strip()
    still = cli("wait", calculation_id, "--timeout", "1.5")
    assert still.returncode == 9 and "still" in still.stderr
    assert cli.json("cancel", calculation_id)["state"] in {"CANCELING", "CANCELED"}
    ended = cli("wait", calculation_id, "--json")
    assert ended.returncode == 5 and json.loads(ended.stdout)["state"] == "CANCELED"
    again = cli("cancel", calculation_id)
    assert again.returncode == 6  # the API's 409, its detail on stderr
    assert again.stderr.strip()


@pytest.fixture
def annotate_genomes(prefect_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The example ops flow `annotate-genomes` deployed (the API sees new deployments at once)."""
    from workflows.orchestration.deployments import deploy

    deploy(["annotate_genomes"])
    monkeypatch.setattr(get_settings().workflow, "deployments_cache_seconds", 0)
    return "annotate-genomes"


def test_workflows_run_uploads_the_local_files_its_file_parameters_name(cli: Cli, annotate_genomes: str) -> None:
    workflows = {workflow["name"]: workflow for workflow in cli.json("workflows", "ls")}
    assert {"pipeline", annotate_genomes} <= set(workflows)
    listed = cli("workflows", "ls")
    assert listed.returncode == 0 and all(word in listed.stdout for word in (annotate_genomes, "profile", "evalue"))

    genome = cli.write("genome.fna", (DEMO / "genome.fna").read_bytes())
    profile = cli.write("family.hmm", (DEMO / "family.hmm").read_bytes())
    run = cli.json("workflows", "run", annotate_genomes, "-p", f"genomes={genome}", "-p", "profile=family.hmm",
                   "-p", "evalue=1e-5", "--wait")  # fmt: skip
    assert run["state"] == "COMPLETE", run["error"]
    assert [(step["tool"], step["state"]) for step in run["steps"]] == [("prodigal", "COMPLETE"),
                                                                        ("hmmsearch", "COMPLETE")]  # fmt: skip
    files = {file["name"]: file for file in _files(cli)}
    assert run["params"]["genomes"] == [files["genome.fna"]["id"]] and run["params"]["evalue"] == 1e-5
    assert run["params"]["profile"] == files["family.hmm"]["id"]
    assert files["family.hmm"]["sha256"] == hashlib.sha256(profile.read_bytes()).hexdigest()
    assert run["id"] in [item["id"] for item in cli.json("workflows", "runs", "--workflow", annotate_genomes)]


def _files(cli: Cli) -> list[dict[str, Any]]:
    from calculations.models import File

    return [
        {"id": str(file.id), "name": file.name, "sha256": file.sha256}
        for file in File.objects.filter(owner__username="cli-user", produced_by=None)
    ]


def test_pipeline_run_uploads_file_paths_and_shows_its_steps(cli: Cli) -> None:
    data = cli.cwd / "data"
    data.mkdir()
    (data / "genome.fna").write_bytes((DEMO / "genome.fna").read_bytes())
    (data / "family.hmm").write_bytes((DEMO / "family.hmm").read_bytes())
    pipeline = {"steps": {
        "genes": {"tool": "prodigal", "params": {"mode": "meta"}, "inputs": {"contigs": "file:genome.fna"}},
        "hits": {"tool": "hmmsearch", "params": {"evalue": 1e-5},
                 "inputs": {"profile": "file:family.hmm", "sequences": "genes.proteins"}},
    }}  # fmt: skip
    (data / "pipeline.json").write_text(json.dumps(pipeline))  # paths relative to the pipeline's file

    done = cli("pipeline", "run", "data/pipeline.json", "--wait", "--download", "out/")
    assert done.returncode == 0, done.stderr
    assert "COMPLETE" in done.stderr and "genes" in done.stderr and "hits" in done.stderr
    run = cli.json("workflows", "runs", "--limit", "1")[0]
    shown = cli.json("show", run["id"])
    assert [(step["name"], step["state"]) for step in shown["steps"]] == [("genes", "COMPLETE"), ("hits", "COMPLETE")]
    genome_id = shown["params"]["steps"]["genes"]["inputs"]["contigs"].removeprefix("file:")
    assert cli.json("show", shown["steps"][0]["calculation_id"])["inputs"]["contigs"] == genome_id

    # --download: every step's outputs under its name, the server's bytes; the flow's return value shown
    api = httpx.Client(base_url=f"{cli.url}/api/v2", headers={"Authorization": f"Bearer {cli.token}"})
    expected = {f"out/{step['name']}/{file['name']}": file for step in shown["steps"] for file in step["outputs"]}
    assert {"out/genes/proteins.faa", "out/genes/genes.gff", "out/hits/hits.tbl"} <= set(expected)
    assert {str(path.relative_to(cli.cwd)) for path in (cli.cwd / "out").rglob("*") if path.is_file()} == set(expected)
    for path, file in expected.items():
        assert (cli.cwd / path).read_bytes() == api.get(f"/files/{file['id']}/content").content, path
        assert path in done.stdout
    assert shown["result"] == {"steps": {step["name"]: [step["calculation_id"]] for step in shown["steps"]}}
    human = cli("show", run["id"])
    assert "proteins.faa" in human.stdout and shown["steps"][1]["calculation_id"] in human.stdout
    assert "result" in human.stdout and TIME_WITH_ZONE.search(human.stdout)
    # `wait` says how long the run took by its own times (the wait itself took none)
    began, ended = (datetime.fromisoformat(shown[key]) for key in ("started_at", "finished_at"))
    waited = cli("wait", run["id"])
    assert waited.returncode == 0 and f"(in {(ended - began).total_seconds():.1f} s)" in waited.stderr
    argv = next(line for line in cli("show", shown["steps"][0]["calculation_id"]).stdout.splitlines() if "argv" in line)
    assert "prodigal" in argv and str(get_settings().calculations_dir) not in argv  # relative to its work dir

    # a step that fails fails the run, and the exit code says how; a canceled run says so too
    broken = {
        "steps": {"genes": {"tool": "prodigal", "inputs": {"contigs": f"file:{_short(cli)}"}, "use_cache": False}}
    }
    failed = cli("pipeline", "run", "-", "--wait", "--json", input_text=json.dumps({"params": broken}))
    assert failed.returncode == 3 and json.loads(failed.stdout)["state"] == "EXECUTOR_ERROR"
    cli.write("note.txt", b"x\n")  # from stdin, a path is relative to the current directory
    sleeping = {"steps": {"nap": {"tool": "sleep", "params": {"seconds": 60}, "inputs": {"text": "file:note.txt"}}}}
    launched = cli("pipeline", "run", "-", input_text=json.dumps(sleeping))
    assert launched.returncode == 0, launched.stderr
    run_id = launched.stdout.strip()
    deadline = time.monotonic() + 60
    while not any(step["state"] == "RUNNING" for step in api.get(f"/workflow-runs/{run_id}").json()["steps"]):
        assert time.monotonic() < deadline, "its step never ran"
        time.sleep(0.1)  # a step to cancel with it
    assert cli.json("cancel", run_id)["state"] in {"CANCELING", "CANCELED"}
    canceled = cli("wait", run_id)
    assert canceled.returncode == 5 and re.search(rf"CANCELED by cli-user at {TIME_WITH_ZONE.pattern}", canceled.stderr)
    nap = cli.json("show", run_id)["steps"][0]["calculation_id"]  # and so does its step, not only "exit code 143"
    assert re.search(r"CANCELED by cli-user \(workflow run .* canceled\) at", cli("show", nap).stdout)


def _short(cli: Cli) -> str:
    short = cli.write("short.fna", b">s\nACGTACGTAA\n")
    return str(cli.json("upload", str(short))[0]["id"])


def test_a_pipeline_naming_a_missing_file_is_a_usage_error(cli: Cli) -> None:
    pipeline = {"steps": {"genes": {"tool": "prodigal", "inputs": {"contigs": "file:nowhere.fna"}}}}
    refused = cli("pipeline", "run", "-", input_text=json.dumps(pipeline))
    assert refused.returncode == 2 and "nowhere.fna" in refused.stderr


def test_what_is_wrong_locally_is_said_before_anything_is_uploaded_or_run(cli: Cli) -> None:
    """A wrong role, an unwritable --download, an unreadable file: exit 2 with a sentence, no traceback,
    and no file uploaded for nothing."""
    cli.write("genome.fna", _genome())
    cli.write("blocker", b"a file, not a directory")
    attempts = [
        ("run", "prodigal", "-i", "sequences=genome.fna"),  # prodigal takes contigs
        ("run", "prodigal", "-i", "contigs=genome.fna", "--download", "blocker/out"),
        ("run", "prodigal", "-i", "contigs=genome.fna", "-p", "translation_table=1e400"),
        ("upload", "/proc/self/mem"),  # a file that cannot be read
    ]
    for args in attempts:
        result = cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr and result.stderr.strip(), args
    files = httpx.get(f"{cli.url}/api/v2/files", headers={"Authorization": f"Bearer {cli.token}"}).json()
    assert files["count"] == 0 and cli.json("ls") == []  # nothing uploaded, nothing run
    assert "no input role 'sequences'" in cli("run", "prodigal", "-i", "sequences=genome.fna").stderr


@pytest.fixture
def idle_cli(live_server: Any, tmp_path: Path) -> Cli:
    """The CLI against the live API, with no worker: for what needs no calculation to run."""
    return Cli(live_server.url, do_create_api_token("cli-user"), tmp_path)


def _outputs_named(owner: str, outputs: list[tuple[str, str, bytes]]) -> str:
    """A COMPLETE calculation whose outputs are (role, name, content): names as a hostile or broken
    server could give them."""
    from calculations.models import File
    from calculations.states import RunState
    from calculations.storage import get_storage
    from calculations.tests.factories import make_calculation

    calc = make_calculation(RunState.COMPLETE, username=owner)
    for role, name, content in outputs:
        blob = get_storage().put(io.BytesIO(content))
        File.objects.create(owner=calc.owner, name=name, size=blob.size, sha256=blob.sha256, produced_by=calc,
                            output_role=role)  # fmt: skip
    return str(calc.id)


def test_download_never_writes_outside_its_directory_whatever_names_the_server_gives(idle_cli: Cli) -> None:
    home = idle_cli.home
    (home / "precious.txt").write_bytes(b"precious")
    target = idle_cli.cwd / "out"
    target.mkdir()
    (target / "link.txt").symlink_to(home / "precious.txt")  # placed there by someone else
    calculation_id = _outputs_named("cli-user", [
        ("report", "../../escaped.txt", b"1"),
        ("report", f"{home}/absolute.txt", b"2"),
        ("../../escaped-role", "same.txt", b"3"),  # two outputs sharing a name: one got `DIR/<role>/`
        ("/abs-role", "same.txt", b"4"),
        ("other", "SAME.txt", b"5"),
        ("log", "link.txt", b"6"),
        ("ctl", "\x1b]52;c;ZXZpbA==\x07\x1b[2J.txt", b"7"),
        ("dots", "..", b"8"),
    ])  # fmt: skip
    before = {path for path in home.rglob("*") if path != target and not path.is_relative_to(target)}

    saved = idle_cli.json("download", calculation_id, "--dir", "out")
    paths = [idle_cli.cwd / entry["path"] for entry in saved]
    assert len(paths) == 8 and all(path.parent == target for path in paths)
    assert len({path.name.casefold() for path in paths}) == 8  # no output replaced another
    assert sorted(path.read_bytes() for path in paths) == [b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"8"]
    assert {path for path in home.rglob("*") if not path.is_relative_to(target)} == before  # nothing outside
    assert (home / "precious.txt").read_bytes() == b"precious"  # the link was replaced, never followed
    assert not (target / "link.txt").is_symlink() and (target / "link.txt").read_bytes() == b"6"
    assert not any(character in path.name for path in paths for character in "\x1b\x07")

    human = idle_cli("download", calculation_id, "--dir", "again")
    assert human.returncode == 0 and "\x1b" not in human.stdout + human.stderr


def _ended_with_logs(owner: str, stdout: str, stderr: str) -> str:
    """A COMPLETE calculation whose tool wrote these logs."""
    from calculations.provenance import update_attempt
    from calculations.states import RunState
    from calculations.storage import get_storage
    from calculations.tests.factories import make_calculation

    calc = make_calculation(RunState.COMPLETE, username=owner)
    stored = {f"{name}_sha256": get_storage().put(io.BytesIO(text.encode())).sha256
              for name, text in (("stdout", stdout), ("stderr", stderr))}  # fmt: skip
    provenance = update_attempt(calc.provenance, calc.attempt, **stored)
    Calculation.objects.filter(id=calc.id).update(provenance=provenance)
    return str(calc.id)


def _on_a_terminal(cli: Cli, *args: str) -> tuple[int, bytes]:
    """`emgapi` with its stdout and stderr on a terminal (a pseudo-terminal): what it shows there."""
    main, secondary = pty.openpty()
    process = subprocess.Popen([str(EMGAPI), *args], cwd=cli.cwd, env=cli.environment(), stdin=subprocess.DEVNULL,
                               stdout=secondary, stderr=secondary)  # fmt: skip
    os.close(secondary)
    shown = b""
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO: the process has closed the terminal
            break
        if not data:
            break
        shown += data
    os.close(main)
    return process.wait(60), shown


def test_logs_show_a_tools_control_characters_on_a_terminal_and_keep_them_in_a_pipe(idle_cli: Cli) -> None:
    hostile = "before\n\x1b]52;c;ZXZpbA==\x07\x1b[2J\x9b0m\ttabbed\rback\n"  # clipboard, clear screen, C1 CSI
    calculation_id = _ended_with_logs("cli-user", stdout=hostile, stderr="err \x1b[31mred\n")
    for args in (("logs", calculation_id), ("logs", calculation_id, "--follow")):
        code, shown = _on_a_terminal(idle_cli, *args)
        assert code == 0, shown
        assert b"\x1b" not in shown and b"\x07" not in shown and "\x9b".encode() not in shown
        text = shown.decode().replace("\r\n", "\n")  # the terminal's own line ends
        assert "before\n\\x1b]52;c;ZXZpbA==\\x07\\x1b[2J\\x9b0m\ttabbed\\x0dback\n" in text
        assert "err \\x1b[31mred\n" in text
    piped = subprocess.run([str(EMGAPI), "logs", calculation_id, "--follow", "--stream", "stdout"], cwd=idle_cli.cwd,
                           env=idle_cli.environment(), capture_output=True, timeout=60)  # fmt: skip
    assert piped.returncode == 0 and piped.stdout == hostile.encode()  # to a file or a pipe: as the tool wrote it


def test_a_pipeline_cannot_make_its_user_upload_a_file_outside_its_directory(idle_cli: Cli) -> None:
    secret = idle_cli.home / "secret.txt"
    secret.write_text("CCO\n")
    (idle_cli.cwd / "data").mkdir()
    for reference in (str(secret), "../secret.txt"):
        pipeline = {"steps": {"s": {"tool": "obabel", "inputs": {"molecules": f"file:{reference}"}}}}
        (idle_cli.cwd / "data" / "pipeline.json").write_text(json.dumps(pipeline))
        for args, text in ((("data/pipeline.json",), None), (("-",), json.dumps(pipeline))):
            refused = idle_cli("pipeline", "run", *args, input_text=text)
            assert refused.returncode == 2 and "pipeline's directory" in refused.stderr, refused.stderr
    files = httpx.get(f"{idle_cli.url}/api/v2/files", headers={"Authorization": f"Bearer {idle_cli.token}"}).json()
    assert files["count"] == 0  # nothing uploaded


def test_export_writes_a_runs_crate_and_checks_each_file_it_holds(idle_cli: Cli) -> None:
    from django.contrib.auth import get_user_model

    from calculations.tests.crate_runs import GENOME, finished_pipeline, finished_tool_calculation, upload

    owner = get_user_model().objects.get(username="cli-user").pk
    genome = upload(owner, "genome.fna", GENOME)
    calc = finished_tool_calculation(owner, "prodigal", {"contigs": genome.id}, {})
    run = finished_pipeline(owner)

    exported = idle_cli.json("export", str(calc.id))  # a calculation: found as `show` finds it
    assert (exported["kind"], exported["held"], exported["listed"]) == ("calculation", 3, 0)
    with zipfile.ZipFile(idle_cli.cwd / f"{calc.id}.crate.zip") as archive:
        assert archive.read("inputs/contigs/genome.fna") == GENOME
    listed = idle_cli.json("export", str(run.id), "-o", "run.crate.zip", "--data", "none")
    assert (listed["kind"], listed["held"], listed["listed"]) == ("workflow-run", 0, 6)
    with zipfile.ZipFile(idle_cli.cwd / "run.crate.zip") as archive:
        assert sorted(archive.namelist()) == ["README.md", "pipeline.json", "ro-crate-metadata.json"]

    others = idle_cli("export", str(uuid.uuid4()), "-o", "nothing.zip")
    assert others.returncode == 6 and "no calculation or workflow run" in others.stderr
    assert not (idle_cli.cwd / "nothing.zip").exists()


def test_run_notify_asks_for_signed_events_and_the_user_sees_their_record_and_their_secret(idle_cli: Cli) -> None:
    idle_cli.write("m.smi", b"CCO\n")
    refused = idle_cli("run", "obabel", "-i", "molecules=m.smi", "--notify", "http://10.0.0.1/hook")
    assert refused.returncode == 6 and "10.0.0.1, a private address, is refused" in refused.stderr
    hook = "http://127.0.0.1:9/hook"  # allowed by the tests' settings; nothing is sent without a worker
    calc = idle_cli.json("run", "obabel", "-i", "molecules=m.smi", "--notify", hook, "--notify-on", "queued")
    [notification] = idle_cli.json("notifications", "--run", calc["id"])
    assert (notification["state"], notification["status"], notification["url"]) == ("QUEUED", "pending", hook)
    secret = idle_cli("webhook-secret").stdout.strip()
    rotated = idle_cli.json("webhook-secret", "--rotate")["secret"]
    assert secret.startswith("whsec_") and rotated != secret


def test_run_asks_for_resources_and_a_request_above_a_limit_is_refused_naming_it(idle_cli: Cli) -> None:
    idle_cli.write("m.smi", b"CCO\n")
    refused = idle_cli("run", "obabel", "-i", "molecules=m.smi", "--cpus", "2")
    assert (
        refused.returncode == 6 and "resources.cpus: 2 is above the maximum of 1 that tool 'obabel'" in refused.stderr
    )
    calc = idle_cli.json("run", "obabel", "-i", "molecules=m.smi", "--memory-mb", "2048", "--time-limit", "90")
    assert calc["resources"] == {"cpus": 1, "memory_mb": 2048, "time_limit_seconds": 90, "gpus": 0}
    assert re.search(r"resources +1 CPU, 2048 MB, 90 s", idle_cli("show", calc["id"]).stdout)
    tool = idle_cli("tools", "obabel").stdout
    assert "resources: 1 CPU, 1024 MB, 600 s unless asked; at most 1 CPU, 8192 MB, 604800 s, no GPU" in tool


def test_tools_shows_what_runs_measured_and_what_a_request_is_given(
    idle_cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.contrib.auth import get_user_model

    from calculations.tests.crate_runs import upload
    from calculations.tests.test_usage import BIG_GENOME, run_prodigal
    from calculations.usage import clear_usage_cache

    monkeypatch.setattr(get_settings().execution, "enabled", ["local", "slurm"])
    for name, value in {"recommend_min_runs": 2, "recommend_defaults": True}.items():
        monkeypatch.setattr(get_settings().resources, name, value)
    owner_id = get_user_model().objects.get(username="cli-user").id
    genome = upload(owner_id, "genome.fna", BIG_GENOME)
    for peak in (40.0, 41.0):
        run_prodigal(owner_id, str(genome.id), peak)
    clear_usage_cache()
    tool = idle_cli("tools", "prodigal").stdout
    clear_usage_cache()
    assert (
        "measured: 95 % of 2 runs with inputs of 1–10 MB peaked under 42 MB (given 64 MB unless asked, on slurm)"
        in (tool)
    )
