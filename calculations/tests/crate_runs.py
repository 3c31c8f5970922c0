"""Finished runs made through the actions, as a worker would leave them, without running a tool:
what the crate tests, the crate validation tests and bench/bench_crates.py export. Each output is
a stored blob (its bytes made up), each step's provenance has its argv, image digest and usage."""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from calculations.actions import (
    JobOutcome,
    OutputBlob,
    check_create_calculation,
    do_create_file,
    do_create_step,
    do_create_workflow_run,
    do_end_attempt,
    do_end_workflow_run,
    do_mark_running,
    do_start_calculation,
    do_start_workflow_run,
)
from calculations.actions.tes import do_create_tes_task
from calculations.models import Calculation, File, WorkflowRun
from calculations.policies import AttemptEnd
from calculations.storage import get_storage
from calculations.tes import TES_TOOL
from calculations.tes.paths import plan_mounts
from calculations.tes.schemas import TaskIn
from calculations.tools import get_tool

GENOME = b">contig_1\nATGAAACGCATTAGCACCACCATTACCACCACCATCACCATTACCACAGGTAACGGTGCGGGCTGA\n"
PROFILE = b"HMMER3/f [3.3.2 | Nov 2020]\nNAME  demo\nLENG  1\nALPH  amino\nHMM  A  C\n  1  2.0  2.0\n//\n"


def upload(owner_id: int, name: str, content: bytes) -> File:
    return do_create_file(owner_id, name, io.BytesIO(content))


def _stored_output(role: str, name: str, content: bytes) -> OutputBlob:
    info = get_storage().put(io.BytesIO(content))
    return OutputBlob(role=role, name=name, sha256=info.sha256, size=info.size)


def finish_calculation(calc: Calculation, *, state: str = "COMPLETE", seed: str = "") -> Calculation:
    """Run `calc`'s attempt 1 to its end as a container job would: started, running (argv, image and
    its digest), then COMPLETE with an output per role (bytes made of `seed`) or EXECUTOR_ERROR."""
    if calc.state == "COMPLETE":  # answered from the cache: nothing to run
        return calc
    if calc.tool == TES_TOOL:
        executor = calc.params["executors"][0]
        image, executable, argv = executor["image"], executor["command"][0], list(executor["command"])
        roles = [(output.get("name") or f"outputs[{i}]", output["path"].rsplit("/", 1)[-1])
                 for i, output in enumerate(calc.params.get("outputs", []))]  # fmt: skip
    else:
        spec = get_tool(calc.tool)
        image = spec.image.name if spec.image is not None else f"emgapi/{calc.tool}:{calc.tool_version}"
        executable = spec.executable
        argv = [executable, *(f"--{name}={value}" for name, value in sorted(calc.params.items()))]
        roles = [(role.name, role.path) for role in spec.outputs]
    do_start_calculation(calc.id, 1, flow_run_id=None, backend="container", host="bench-host", workdir=f"/w/{calc.id}")
    digest = "sha256:" + hashlib.sha256(image.encode()).hexdigest()
    do_mark_running(calc.id, 1, job_id="4242", argv=argv, executable=executable, image=image, image_digest=digest)
    outcome = JobOutcome(
        exit_code=0 if state == "COMPLETE" else 1,
        resource_usage={"wall_seconds": 1.5, "user_cpu_seconds": 1.2, "max_rss_mb": 42.0},
        stdout_sha256=None,
        stderr_sha256=None,
    )
    if state != "COMPLETE":
        return do_end_attempt(calc.id, 1, AttemptEnd.TOOL_FAILED, message="exit code 1: bad input", outcome=outcome)
    outputs = [
        _stored_output(role, name, f">{calc.tool}_{role} {seed or calc.id}\nMKV\n".encode()) for role, name in roles
    ]
    return do_end_attempt(calc.id, 1, AttemptEnd.SUCCEEDED, outputs=outputs, outcome=outcome)


def finished_tool_calculation(
    owner_id: int, tool: str, inputs: Mapping[str, UUID], params: Mapping[str, Any], *, state: str = "COMPLETE"
) -> Calculation:
    calc = check_create_calculation(owner_id, tool, inputs=inputs, params=params, use_cache=False, backend="local")
    return finish_calculation(calc, state=state)


def finished_tes_task(owner_id: int) -> Calculation:
    """A COMPLETE GA4GH TES task: one executor (an image, a command) reading a file, writing one output."""
    genome = upload(owner_id, "genome.fna", GENOME)
    task = TaskIn.model_validate(
        {
            "name": "count contigs",
            "description": "Counts the contigs of a genome.",
            "inputs": [{"url": f"emgapi://files/{genome.id}", "path": "/data/in/genome.fna"}],
            "outputs": [{"name": "count", "path": "/data/out/count.txt"}],
            "executors": [{"image": "emgapi/prodigal:2.6.3", "command": ["grep", "-c", ">", "/data/in/genome.fna"]}],
        }
    )
    resources = {"cpus": 1, "memory_mb": 1024, "time_limit_seconds": 60, "disk_bytes": 2**30}
    calc = do_create_tes_task(
        owner_id,
        task,
        backend="container",
        resolved={0: genome},
        mounts=plan_mounts(task).directories,
        resources=resources,
        notes=[],
    )
    return finish_calculation(calc)


def started_workflow_run(owner_id: int, workflow: str, params: Mapping[str, Any]) -> WorkflowRun:
    run = do_create_workflow_run(owner_id, workflow, params)
    return do_start_workflow_run(run.id, 1, flow_run_id=uuid.uuid4(), worker="bench-host:1")


def end_workflow_run(run: WorkflowRun, *, failed: bool = False) -> WorkflowRun:
    if failed:
        return do_end_workflow_run(run.id, 1, AttemptEnd.FLOW_FAILED, message="step hits failed")
    return do_end_workflow_run(run.id, 1, AttemptEnd.SUCCEEDED)


def finished_pipeline(owner_id: int, *, hits_fail: bool = False) -> WorkflowRun:
    """A COMPLETE prodigal -> hmmsearch pipeline (an edge: genes.proteins feeds hits.sequences)."""
    genome = upload(owner_id, "genome.fna", GENOME)
    profile = upload(owner_id, "demo.hmm", PROFILE)
    steps = {
        "genes": {"tool": "prodigal", "params": {"mode": "single"}, "inputs": {"contigs": f"file:{genome.id}"}},
        "hits": {"tool": "hmmsearch", "inputs": {"profile": f"file:{profile.id}", "sequences": "genes.proteins"}},
    }
    run = started_workflow_run(owner_id, "pipeline", {"steps": steps})
    genes = do_create_step(
        run.id, 1, step="genes", index=0, tool="prodigal", inputs={"contigs": genome.id}, params={"mode": "single"}
    )
    finish_calculation(genes)
    proteins = File.objects.get(produced_by=genes, output_role="proteins")
    hits_inputs = {"profile": profile.id, "sequences": proteins.id}
    hits = do_create_step(run.id, 1, step="hits", index=0, tool="hmmsearch", inputs=hits_inputs, params={})
    finish_calculation(hits, state="EXECUTOR_ERROR" if hits_fail else "COMPLETE")
    return end_workflow_run(run, failed=hits_fail)


def finished_map(owner_id: int, count: int) -> WorkflowRun:
    """A COMPLETE pipeline mapping prodigal over `count` genomes (one step, `count` elements)."""
    genomes = [upload(owner_id, f"genome_{i}.fna", GENOME + f">contig_{i}\nATGCCC\n".encode()) for i in range(count)]
    steps = {"genes": {"tool": "prodigal", "inputs": {"contigs": {"each": [f"file:{g.id}" for g in genomes]}}}}
    run = started_workflow_run(owner_id, "pipeline", {"steps": steps})
    for index, genome in enumerate(genomes):
        step = do_create_step(
            run.id, 1, step="genes", index=index, tool="prodigal", inputs={"contigs": genome.id}, params={}
        )
        finish_calculation(step)
    return end_workflow_run(run)


__all__ = [
    "GENOME",
    "PROFILE",
    "end_workflow_run",
    "finish_calculation",
    "finished_map",
    "finished_pipeline",
    "finished_tes_task",
    "finished_tool_calculation",
    "started_workflow_run",
    "upload",
]
