"""GA4GH TES tasks driven by the real py-tes client, through the live API, Prefect and the worker, on
the container backend: create, wait, outputs, logs, cancel, list with filters and every view."""

from __future__ import annotations

import json
import os
import random
import re
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
import tes

from calculations.actions import do_create_api_token, do_set_user_quota
from calculations.tests.crate_validation import PROCESS_RUN, validate_crate
from calculations.workdirs import attempt_dir
from demo.synthetic import fasta, genome_with_genes, protein_family
from emgapiv2.config import get_settings

pytestmark = [pytest.mark.integration, pytest.mark.container, pytest.mark.django_db(transaction=True)]
IMAGE = "emgapi/prodigal:2.6.3"  # a registered tool's image: allowed by default
COUNT_AND_FAIL = "grep -c '>' proteins.faa > count.txt; echo oops >&2; exit 3"


class Client:
    def __init__(self, url: str) -> None:
        self.url = url
        self.token = do_create_api_token("tes-user")
        self.tes = tes.HTTPClient(url, token=self.token, timeout=30)
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30)

    def upload(self, name: str, content: bytes) -> str:
        response = self.http.post("/api/v2/files", files={"file": (name, content)})
        assert response.status_code == 201, response.text
        return f"{self.url}/api/v2/files/{response.json()['id']}/content"

    def wait(self, task_id: str, timeout: float = 90) -> tes.Task:
        deadline = time.monotonic() + timeout
        while (task := self.tes.get_task(task_id, view="FULL")).state not in {"COMPLETE", "EXECUTOR_ERROR",
                                                                              "SYSTEM_ERROR", "CANCELED"}:  # fmt: skip
            assert time.monotonic() < deadline, f"task still {task.state}"
            time.sleep(0.2)
        return task


@pytest.fixture
def client(
    live_server: Any,
    calculation_worker: None,
    dispatching: None,
    container_engine: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Client:
    monkeypatch.setattr(get_settings(), "public_url", live_server.url)  # where output URLs point
    return Client(live_server.url)


def _genome() -> bytes:
    rng = random.Random(7)
    family = protein_family(rng, length=220, members=3, identity=0.8)
    return fasta({"c1": genome_with_genes(rng, family, length=30_000)}).encode()


def test_prodigal_task_runs_its_executors_in_turn_and_stores_its_outputs(client: Client, tmp_path: Path) -> None:
    genome_url = client.upload("genome.fna", _genome())
    task = tes.Task(
        name="call-genes",
        tags={"project": "tes-test"},
        inputs=[
            tes.Input(url=genome_url, path="/data/in/genome.fna"),
            tes.Input(content="a note\n", path="/data/in/note.txt"),
        ],
        outputs=[
            tes.Output(path="/data/out/proteins.faa", url="proteins.faa"),
            tes.Output(path="/data/out/*.txt", path_prefix="/data/out/"),
        ],
        executors=[
            tes.Executor(
                image=IMAGE,
                command=[
                    "prodigal",
                    "-q",
                    "-i",
                    "/data/in/genome.fna",
                    "-a",
                    "/data/out/proteins.faa",
                    "-o",
                    "/data/out/genes.gff",
                ],
            ),  # fmt: skip
            # fails, and says so, but ignore_error lets the next executor run
            tes.Executor(
                image=IMAGE,
                command=["sh", "-c", "grep -c '>' proteins.faa > count.txt; echo oops >&2; exit 3"],
                workdir="/data/out",
                ignore_error=True,
            ),  # fmt: skip
            tes.Executor(image=IMAGE, command=["cat"], stdin="/data/in/note.txt", stdout="/data/out/copied.txt"),
        ],
    )
    task_id = client.tes.create_task(task)
    done = client.wait(task_id)
    assert done.state == "COMPLETE", done
    log = done.logs[-1]
    assert [executor.exit_code for executor in log.logs] == [0, 3, 0]
    assert "oops" in log.logs[1].stderr and log.logs[2].stdout == "a note\n"
    outputs = {output.path: output for output in log.outputs}
    assert set(outputs) == {"/data/out/proteins.faa", "/data/out/count.txt", "/data/out/copied.txt"}
    proteins = client.http.get(outputs["/data/out/proteins.faa"].url).content
    count = int(client.http.get(outputs["/data/out/count.txt"].url).content)
    assert count >= 3 and proteins.count(b">") == count
    assert int(outputs["/data/out/proteins.faa"].size_bytes) == len(proteins)
    assert client.http.get(outputs["/data/out/copied.txt"].url).content == b"a note\n"
    # the same run, as a calculation of the platform's own API, with the outputs as the user's files
    calc = client.http.get(f"/api/v2/calculations/{task_id}").json()
    assert calc["state"] == "COMPLETE" and calc["backend"] == "container"
    names = {file["name"] for file in client.http.get("/api/v2/files").json()["items"]}
    assert {"proteins.faa", "count.txt", "copied.txt"} <= names
    # views and filters, as a TES client asks for them
    assert client.tes.get_task(task_id, view="MINIMAL").logs is None
    basic = client.tes.get_task(task_id, view="BASIC")
    assert basic.logs[-1].logs[0].stdout is None and basic.inputs[1].content is None
    listed = client.tes.list_tasks(view="BASIC").tasks
    assert [t.id for t in listed] == [task_id] and listed[0].name == "call-genes"
    tagged = client.http.get("/ga4gh/tes/v1/tasks", params={"tag_key": "project", "tag_value": "tes-test"}).json()
    assert [t["id"] for t in tagged["tasks"]] == [task_id]
    assert client.http.get("/ga4gh/tes/v1/tasks", params={"tag_key": "project", "tag_value": "x"}).json() == {
        "tasks": []
    }
    # its RO-Crate, exported as a user would, is a Process Run Crate the validator accepts (issue 20)
    crate = tmp_path / "task.crate.zip"
    crate.write_bytes(client.http.get(f"/api/v2/calculations/{task_id}/crate").raise_for_status().content)
    report = validate_crate(crate, PROCESS_RUN)
    assert report.is_valid and not report.refused, str(report)


def test_a_failing_executor_is_an_executor_error_without_outputs(client: Client) -> None:
    task = tes.Task(
        outputs=[tes.Output(path="/data/out/x.txt")],
        executors=[
            tes.Executor(image=IMAGE, command=["sh", "-c", "echo partial > /data/out/x.txt; echo broken >&2; exit 2"]),
            tes.Executor(image=IMAGE, command=["true"]),
        ],
    )
    done = client.wait(client.tes.create_task(task))
    assert done.state == "EXECUTOR_ERROR"
    assert [executor.exit_code for executor in done.logs[-1].logs] == [2]  # the second never ran
    assert done.logs[-1].outputs == []
    assert any("broken" in line and "exited with code 2" in line for line in done.logs[-1].system_logs)


def test_cancel_stops_a_running_task(client: Client) -> None:
    task_id = client.tes.create_task(tes.Task(executors=[tes.Executor(image=IMAGE, command=["sleep", "300"])]))
    deadline = time.monotonic() + 60
    while client.tes.get_task(task_id).state != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    client.tes.cancel_task(task_id)
    started = time.monotonic()
    assert client.wait(task_id, timeout=30).state == "CANCELED"
    assert time.monotonic() - started < 15


def test_what_an_executor_leaves_behind_never_reaches_the_host(client: Client, tmp_path: Path) -> None:
    """Links to the host, a FIFO where an executor's stdout goes, clashing names: the worker neither
    follows, blocks, nor mixes them up."""
    escape = tmp_path / "escape"
    plant = f"ln -s / /data/l; ln -s {escape} /data/sub; mkfifo /data/fifo.txt; mkdir -p /data/out/x; " \
        "echo 1 > /data/out/x_y; echo 22 > /data/out/x/y; echo scratch > /tmp/t.txt"  # fmt: skip
    task = tes.Task(
        volumes=["/data"],
        outputs=[
            tes.Output(path="/data/out", type="DIRECTORY"),
            tes.Output(path="/data/*/etc/host*", path_prefix="/data/"),  # through /data/l: never followed
            tes.Output(path="/tmp/t.txt"),  # a task may bind /tmp (then it has no scratch tmpfs there)
        ],
        executors=[
            tes.Executor(image=IMAGE, command=["sh", "-c", plant]),
            tes.Executor(image=IMAGE, command=["echo", "hello"], stdout="/data/sub/a/b/log.txt"),
            tes.Executor(image=IMAGE, command=["echo", "hi"], stdout="/data/fifo.txt"),
        ],
    )
    done = client.wait(client.tes.create_task(task), timeout=60)
    assert done.state == "COMPLETE", done.logs
    assert not escape.exists()  # nothing was created through the link
    notes = "\n".join(done.logs[-1].system_logs)
    assert "/data/sub/a/b/log.txt: 'sub' on the way is a link" in notes
    assert "/data/fifo.txt is not a regular file" in notes
    stored = {output.path: client.http.get(output.url).content for output in done.logs[-1].outputs}
    assert stored == {"/data/out/x_y": b"1\n", "/data/out/x/y": b"22\n", "/tmp/t.txt": b"scratch\n"}


def _mark_unread(directory: Path) -> None:
    """Until someone lists it again: relatime updates an access time older than the modification time."""
    os.utime(directory, (0, directory.stat().st_mtime))


def test_outputs_through_a_link_to_a_host_folder_reveal_nothing_of_it(client: Client, tmp_path: Path) -> None:
    """An executor links /data/sub to a host folder full of files: the worker neither lists nor
    stat-s it, and nothing of it (a name, a count, its existence) reaches the task."""
    host = tmp_path / "host"
    (host / "deep").mkdir(parents=True)
    for i in range(300):
        (host / f"hostonly-{i}.txt").write_text("secret\n")
    for i in range(20_000):
        (host / "deep" / f"hostonly-deep-{i}").touch()
    for directory in (host, host / "deep"):
        _mark_unread(directory)
    task = tes.Task(
        volumes=["/data"],
        outputs=[
            tes.Output(path="/data/sub/*", path_prefix="/data/sub/"),  # its directory is a link: no match
            tes.Output(path="/data/sub/deep", type="DIRECTORY"),
            tes.Output(path="/data/sub/hostonly-1.txt"),
        ],
        executors=[tes.Executor(image=IMAGE, command=["ln", "-s", str(host), "/data/sub"])],
    )
    started = time.monotonic()
    task_id = client.tes.create_task(task)
    done = client.wait(task_id, timeout=60)
    assert time.monotonic() - started < 30
    assert done.state == "EXECUTOR_ERROR"
    expected = "outputs[1] (/data/sub/deep): not found, or not a directory, inside the task's directories"
    assert expected in done.logs[-1].system_logs
    # what the task says back (its own output paths aside): its logs, system logs, outputs and error
    seen = json.dumps(client.http.get(f"/ga4gh/tes/v1/tasks/{task_id}", params={"view": "FULL"}).json()["logs"])
    seen += client.http.get(f"/api/v2/calculations/{task_id}").json()["error"]
    assert "hostonly" not in seen
    assert host.stat().st_atime == 0 and (host / "deep").stat().st_atime == 0  # never listed


def test_scratch_space_is_capped_while_the_task_runs_and_not_kept_after(client: Client) -> None:
    disk_gb = 0.1
    task = tes.Task(
        volumes=["/data"],
        resources=tes.Resources(disk_gb=disk_gb),
        executors=[
            tes.Executor(image=IMAGE, command=["sh", "-c", "dd if=/dev/zero of=/data/big bs=1M count=512 && sleep 600"])
        ],
    )
    started = time.monotonic()
    task_id = client.tes.create_task(task)
    done = client.wait(task_id, timeout=60)
    assert time.monotonic() - started < 45  # stopped while it ran, not at the end of its sleep
    assert done.state == "EXECUTOR_ERROR"
    limit = int(disk_gb * 1024**3)
    ended = client.http.get(f"/api/v2/calculations/{task_id}").json()["error"]
    assert re.search(rf"scratch space exceeded: \d+ bytes written, the limit is {limit}", ended), ended
    assert not (attempt_dir(UUID(task_id), 1) / "fs").exists()  # the scratch of a failed task is not kept


def test_a_task_whose_scratch_space_fills_the_quota_still_stores_its_outputs(client: Client) -> None:
    """The scratch space is reserved at submission; the outputs take its place as the task ends."""
    disk_gb = 0.01
    do_set_user_quota("tes-user", storage_bytes=int(disk_gb * 1024**3))
    task = tes.Task(
        resources=tes.Resources(disk_gb=disk_gb),
        outputs=[tes.Output(path="/data/out/x.txt")],
        executors=[tes.Executor(image=IMAGE, command=["sh", "-c", "echo result > /data/out/x.txt"])],
    )
    done = client.wait(client.tes.create_task(task))
    assert done.state == "COMPLETE", done.logs
    assert client.http.get(done.logs[-1].outputs[0].url).content == b"result\n"
