"""A typed client of the EMG calculations API (/api/v2) on httpx.

```python
from emgapi_client import Client

with Client("http://127.0.0.1:8000", token) as api:
    genome = api.upload(Path("genome.fna"))
    calc = api.wait_calculation(api.submit("prodigal", {"contigs": genome["id"]}, {"mode": "meta"})["id"])
    api.download_outputs(calc, Path("out"))
```
Every method raises `ApiError` (message: the server's `detail`) when the API refuses, and
`ApiUnreachable` when it does not answer.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO, Any, TypeVar, cast

import httpx

from emgapi_client.crates import CrateData, CrateKind, CrateSummary, check_crate
from emgapi_client.errors import ApiError, ApiUnreachable, ChecksumMismatch, EmgapiError, InvalidUrl, WaitTimeout
from emgapi_client.transfers import (
    CHUNK_BYTES,
    HashingReader,
    distinct_name,
    open_exclusive,
    safe_file_name,
    sha256_of,
    target_in,
    unseen_text,
)
from emgapi_client.types import (
    TERMINAL_STATES,
    Calculation,
    CrateImport,
    File,
    LogChunk,
    Logs,
    LogStream,
    Notification,
    Notify,
    ProgressCallback,
    Resources,
    Retry,
    SavedOutput,
    Tool,
    ToolSummary,
    WebhookSecret,
    Workflow,
    WorkflowRun,
    WorkflowRunProgress,
    WorkflowRunSummary,
)

__version__ = "0.1.0"

# Files at least this large go to S3 through presigned URLs when the server offers them (S3
# storage): the bytes then never pass through the API. Smaller ones are one multipart POST.
DEFAULT_PRESIGNED_THRESHOLD_BYTES = 64 * 2**20
# statuses of POST /uploads meaning "not here": no such endpoint (an older server), or storage that
# is not S3 (409); upload through POST /files instead
_NO_PRESIGNED_UPLOADS = frozenset({404, 405, 409, 501})
_FIRST_POLL_SECONDS = 0.1

_Polled = TypeVar("_Polled", Calculation, WorkflowRun, WorkflowRunProgress)


def normalise_url(url: str) -> str:
    """The platform's base URL, whether given as `host:8000`, `http://host:8000/` or `…/api/v2`."""
    url = url.strip().rstrip("/")
    if "://" in url and not url.startswith(("http://", "https://")):
        raise InvalidUrl(f"{url!r} is not an http(s) URL of the platform (e.g. http://127.0.0.1:8000)")
    if not url.startswith(("http://", "https://")):
        url = f"http://{url}"
    return url.removesuffix("/api/v2").rstrip("/")


def _error_from(response: httpx.Response) -> ApiError:
    """The API's `{"detail": …}` as an exception; a page that is not the API's JSON is quoted."""
    detail = ""
    problems: list[str] = []
    try:
        body = response.json()
        if isinstance(body, dict) and body.get("detail"):
            detail = str(body["detail"])
            if isinstance(body.get("problems"), list):
                problems = [str(problem) for problem in body["problems"]]
    except ValueError:
        pass
    if not detail:
        text = " ".join(response.text.split())[:300]
        detail = f"{response.status_code} {response.reason_phrase}" + (f": {text}" if text else "")
    return ApiError(
        response.status_code, detail, method=response.request.method, url=str(response.request.url), problems=problems
    )


class _PresignedUnavailable(Exception):
    pass


class Client:
    """The calculations API of one platform, as one user (their API token)."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout_seconds: float = 60.0,
        poll_seconds: float = 1.0,
        presigned_threshold_bytes: int = DEFAULT_PRESIGNED_THRESHOLD_BYTES,
    ) -> None:
        """Args:
        url: the platform (`http://host:8000`); `/api/v2` is added.
        poll_seconds: the longest pause between two polls while waiting (the first ones are shorter).
        presigned_threshold_bytes: upload files this large through presigned URLs when offered.
        """
        self.url = normalise_url(url)
        self.poll_seconds = poll_seconds
        self.presigned_threshold_bytes = presigned_threshold_bytes
        headers = {"User-Agent": f"emgapi-client/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._timeout_seconds = timeout_seconds
        self._http = httpx.Client(base_url=f"{self.url}/api/v2", headers=headers, timeout=timeout_seconds)
        self._object_store: httpx.Client | None = None  # made when first needed: a client costs ~50 ms

    @property
    def _plain(self) -> httpx.Client:
        """For presigned URLs, which carry their own signature: the API token never goes to the object store."""
        if self._object_store is None:
            self._object_store = httpx.Client(timeout=self._timeout_seconds)
        return self._object_store

    def close(self) -> None:
        self._http.close()
        if self._object_store is not None:
            self._object_store.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- HTTP -----------------------------------------------------------------------------------

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ApiUnreachable(f"cannot reach {self.url}: {exc}") from exc
        if response.is_error:
            raise _error_from(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._send(method, path, **kwargs).json()

    def _items(self, path: str, *, limit: int, offset: int, **filters: str | None) -> list[Any]:
        params: dict[str, str | int] = {"limit": limit, "offset": offset}
        params.update({key: value for key, value in filters.items() if value is not None})
        return list(self._json("GET", path, params=params)["items"])

    @contextlib.contextmanager
    def _stream(self, method: str, path: str) -> Iterator[httpx.Response]:
        try:
            with self._http.stream(method, path) as response:
                if response.is_error:
                    response.read()
                    raise _error_from(response)
                yield response
        except httpx.TransportError as exc:
            raise ApiUnreachable(f"cannot reach {self.url}: {exc}") from exc

    def check_token(self) -> None:
        """Raise `ApiError` (401) unless the API accepts this client's token."""
        self._send("GET", "/files", params={"limit": 1})

    # -- files ----------------------------------------------------------------------------------

    def upload(self, path: Path, *, name: str | None = None, progress: ProgressCallback | None = None) -> File:
        """Upload a local file, streamed, and check that the server holds the same sha256.

        Presigned (straight to S3) when the file is at least `presigned_threshold_bytes` and the server
        offers it; otherwise one multipart `POST /files`. Raises `ChecksumMismatch` if the sha256 the
        server reports is not the local file's.
        """
        path = Path(path)
        size = path.stat().st_size
        if size >= self.presigned_threshold_bytes:
            try:
                return self._upload_presigned(path, name or path.name, size, progress)
            except _PresignedUnavailable:
                pass
        return self._upload_multipart(path, name or path.name, progress)

    def _upload_multipart(self, path: Path, name: str, progress: ProgressCallback | None) -> File:
        with HashingReader(path, progress) as reader:
            file = cast(File, self._json("POST", "/files", files={"file": (name, reader, "application/octet-stream")}))
            local = reader.digest.hexdigest()
        _check_sha256(path, file, local)
        return file

    def _upload_presigned(self, path: Path, name: str, size: int, progress: ProgressCallback | None) -> File:
        local = sha256_of(path)  # declared up front: the server verifies the assembled bytes against it
        try:
            upload = self._json("POST", "/uploads", json={"name": name, "size": size, "sha256": local})
        except ApiError as exc:
            if exc.status_code in _NO_PRESIGNED_UPLOADS:
                raise _PresignedUnavailable from exc
            raise
        try:
            sent = 0

            def count(chunk_bytes: int) -> None:
                nonlocal sent
                sent += chunk_bytes
                if progress is not None:
                    progress(sent, size)

            parts = []
            with path.open("rb") as handle:
                for part in upload["parts"]:
                    handle.seek((int(part["part_number"]) - 1) * int(upload["part_size"]))
                    etag = self._put_part(str(part["url"]), handle, int(part["size"]), count)
                    parts.append({"part_number": part["part_number"], "etag": etag})
            file = cast(File, self._json("POST", f"/uploads/{upload['id']}/complete", json={"parts": parts}))
        except BaseException:
            with contextlib.suppress(EmgapiError):  # abort it: S3 drops the parts (best effort)
                self._send("DELETE", f"/uploads/{upload['id']}")
            raise
        _check_sha256(path, file, local)
        return file

    def _put_part(self, url: str, handle: IO[bytes], size: int, count: Callable[[int], None]) -> str:
        def body() -> Iterator[bytes]:
            remaining = size
            while remaining:
                data = handle.read(min(CHUNK_BYTES, remaining))
                if not data:
                    raise EmgapiError(f"{handle.name} shrank while it was being uploaded")
                remaining -= len(data)
                count(len(data))
                yield data

        try:
            # the URL signs the Content-Length: sent as a length, not chunked
            response = self._plain.put(url, content=body(), headers={"Content-Length": str(size)})
        except httpx.TransportError as exc:
            raise ApiUnreachable(f"cannot reach the object store at {httpx.URL(url).host}: {exc}") from exc
        if response.is_error:
            raise _error_from(response)
        return str(response.headers.get("ETag", ""))

    def get_file(self, file_id: str) -> File:
        return cast(File, self._json("GET", f"/files/{file_id}"))

    def list_files(self, *, limit: int = 100, offset: int = 0) -> list[File]:
        """Your files, newest first."""
        return cast(list[File], self._items("/files", limit=limit, offset=offset))

    def delete_file(self, file_id: str) -> None:
        self._send("DELETE", f"/files/{file_id}")

    def download(
        self,
        file_id: str | File,
        directory: Path,
        *,
        progress: ProgressCallback | None = None,
        name: str | None = None,
    ) -> Path:
        """Stream a file into `directory` under its own name made safe (or `name`, a safe one),
        replacing an entry of that name (a rename: a symbolic link there is replaced, never followed),
        and check its sha256 on the way; returns the path. Nothing is left behind if it fails."""
        file = self.get_file(file_id) if isinstance(file_id, str) else file_id
        directory.mkdir(parents=True, exist_ok=True)
        target = target_in(directory, name or safe_file_name(file["name"], file["id"]))
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
        digest, done = hashlib.sha256(), 0
        try:
            with self._stream("GET", f"/files/{file['id']}/content") as response, open_exclusive(partial) as out:
                for chunk in response.iter_bytes(CHUNK_BYTES):
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, file["size"])
            if digest.hexdigest() != file["sha256"]:
                raise ChecksumMismatch(
                    f"file {file['id']}: the bytes received hash to {digest.hexdigest()}, "
                    f"the server says {file['sha256']}"
                )
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return target

    def download_outputs(
        self,
        calculation: str | Calculation,
        directory: Path,
        *,
        progress: Callable[[File], ProgressCallback | None] | None = None,
    ) -> list[tuple[str, Path]]:
        """Download every output of a calculation into `directory` (never below or outside it), each
        under its file name made safe; an output whose name an earlier one took gets a distinct one
        (`<role>-<name>`). Returns (role, path) pairs.

        Args:
            progress: given each output file before its download, answers its progress callback.
        """
        calc = self.get_calculation(calculation) if isinstance(calculation, str) else calculation
        taken: set[str] = set()
        downloaded = []
        for role, file_ids in sorted(calc["outputs"].items()):
            for file_id in file_ids:
                file = self.get_file(file_id)
                name = distinct_name(safe_file_name(file["name"], file["id"]), role, taken)
                path = self.download(file, directory, progress=progress(file) if progress else None, name=name)
                downloaded.append((role, path))
        return downloaded

    def download_run_outputs(
        self,
        run: str | WorkflowRun,
        directory: Path,
        *,
        progress: Callable[[File], ProgressCallback | None] | None = None,
    ) -> list[SavedOutput]:
        """Download the outputs of every COMPLETE step of a workflow run into `directory/<step>/`
        (a step called more than once, a map's elements, into `directory/<step>/<index>/`), each under
        its file name made safe and distinct as `download_outputs` makes them; each sha256 is checked.

        Args:
            progress: given each output file before its download, answers its progress callback.
        """
        run = self.get_workflow_run(run) if isinstance(run, str) else run
        steps = run["steps"]
        mapped = {step["name"] for step in steps if step["index"] or sum(s["name"] == step["name"] for s in steps) > 1}
        taken: dict[Path, set[str]] = {}
        saved = []
        for step in sorted(steps, key=lambda step: (step["name"], step["index"])):
            if step["state"] != "COMPLETE":
                continue
            target = directory / safe_file_name(step["name"], "step")
            if step["name"] in mapped:
                target = target / str(step["index"])
            outputs = step.get("outputs")
            if outputs is None:  # an older server: the step's calculation lists them
                outputs = [
                    self.get_file(file_id) for file_id in _output_ids(self.get_calculation(step["calculation_id"]))
                ]
            for file in sorted(outputs, key=lambda file: (file["output_role"], file["name"])):
                name = distinct_name(
                    safe_file_name(file["name"], file["id"]), file["output_role"], taken.setdefault(target, set())
                )
                path = self.download(file, target, progress=progress(file) if progress else None, name=name)
                saved.append(SavedOutput(step["name"], step["index"], file["output_role"], path))
        return saved

    def download_crate(
        self,
        kind: CrateKind,
        object_id: str,
        target: Path,
        *,
        data: CrateData = "small",
        progress: ProgressCallback | None = None,
    ) -> CrateSummary:
        """Stream a run's RO-Crate (a zip) to `target`, replacing an entry of that name (a rename: a link
        there is replaced, never followed), then check it (`check_crate`: each file it holds against
        the sha256 its metadata gives); nothing is left behind if either fails.

        Args:
            kind: "calculation" (a tool's run or a TES task) or "workflow-run".
            data: the data files it holds: none, small (up to the server's limit) or all.
            progress: called with the bytes received so far (the total is unknown: 0).
        """
        collection = {"calculation": "calculations", "workflow-run": "workflow-runs"}[kind]
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
        done = 0
        try:
            with (
                self._stream("GET", f"/{collection}/{object_id}/crate?data={data}") as response,
                open_exclusive(partial) as out,
            ):
                for chunk in response.iter_bytes(CHUNK_BYTES):
                    out.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, 0)
            summary = check_crate(partial)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return replace(summary, path=target)

    def import_crate(self, path: Path) -> CrateImport:
        """Run a crate (a zip `download_crate` wrote, from any instance of the platform) on this one as
        yours, verifying it: the new run, whose `verdict`, once it ended, compares its outputs with the
        crate's. An `ApiError` (422) lists in `problems` every reason it cannot be run here."""
        with path.open("rb") as reader:
            return cast(
                CrateImport, self._json("POST", "/crates", files={"crate": (path.name, reader, "application/zip")})
            )

    # -- tools and calculations -----------------------------------------------------------------

    def list_tools(self) -> list[ToolSummary]:
        return cast(list[ToolSummary], self._json("GET", "/tools"))

    def get_tool(self, name: str) -> Tool:
        return cast(Tool, self._json("GET", f"/tools/{name}"))

    def submit(
        self,
        tool: str,
        inputs: Mapping[str, str],
        params: Mapping[str, Any] | None = None,
        *,
        backend: str | None = None,
        use_cache: bool = True,
        idempotency_key: str | None = None,
        notify: Notify | None = None,
        resources: Resources | None = None,
        retry: Retry | None = None,
    ) -> Calculation:
        """Run a tool on your files (`inputs`: file id per input role). Answered at once (COMPLETE) when
        an identical calculation exists, unless `use_cache` is false. With `notify`, a signed event is
        POSTed to its URL when the calculation reaches one of its states. `resources` asks for more or
        less than the tool's own CPUs, memory, time or GPUs (they never change the cache's answer);
        `retry` says whether an attempt killed for its memory or time is retried with more, up to what."""
        body: dict[str, Any] = {"inputs": dict(inputs), "params": dict(params or {}), "use_cache": use_cache}
        if backend is not None:
            body["backend"] = backend
        if notify is not None:
            body["notify"] = dict(notify)
        if resources:
            body["resources"] = dict(resources)
        if retry:
            body["retry"] = dict(retry)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return cast(Calculation, self._json("POST", f"/tools/{tool}/calculations", json=body, headers=headers))

    def get_calculation(self, calculation_id: str) -> Calculation:
        return cast(Calculation, self._json("GET", f"/calculations/{calculation_id}"))

    def list_calculations(
        self, *, state: str | None = None, tool: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[Calculation]:
        """Your calculations, newest first."""
        return cast(list[Calculation], self._items("/calculations", limit=limit, offset=offset, state=state, tool=tool))

    def cancel_calculation(self, calculation_id: str) -> Calculation:
        """Ask it to stop: CANCELED at once if it had not started, else CANCELING until its tool is gone."""
        return cast(Calculation, self._json("POST", f"/calculations/{calculation_id}/cancel"))

    def rerun_calculation(self, calculation_id: str) -> Calculation:
        """Run an ended calculation again to verify it (same tool version, image and inputs; no cache):
        the new calculation, whose `verdict` says, once it ended, whether its outputs are identical."""
        return cast(Calculation, self._json("POST", f"/calculations/{calculation_id}/rerun"))

    def wait_calculation(
        self,
        calculation_id: str,
        *,
        timeout_seconds: float | None = None,
        on_update: Callable[[Calculation], None] | None = None,
    ) -> Calculation:
        """Poll until it is COMPLETE, EXECUTOR_ERROR, SYSTEM_ERROR or CANCELED (`WaitTimeout` after
        `timeout_seconds`); `on_update` sees it at every poll."""
        return self._wait(lambda: self.get_calculation(calculation_id), timeout_seconds, on_update)

    def _wait(
        self,
        get: Callable[[], _Polled],
        timeout_seconds: float | None,
        on_update: Callable[[_Polled], None] | None,
    ) -> _Polled:
        deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
        pause = _FIRST_POLL_SECONDS
        while True:
            current = get()
            if on_update is not None:
                on_update(current)
            if current["state"] in TERMINAL_STATES:
                return current
            if deadline is not None and time.monotonic() + pause > deadline:
                raise WaitTimeout(
                    f"{current['id']} is still {current['state']} after {timeout_seconds:g} s", current["state"]
                )
            time.sleep(pause)
            pause = min(pause * 1.5, self.poll_seconds)

    def logs(self, calculation_id: str) -> Logs:
        """The ends of the tool's stdout and stderr: live while it runs, stored once it ended."""
        return cast(Logs, self._json("GET", f"/calculations/{calculation_id}/logs"))

    def log_chunk(
        self, calculation_id: str, stream: LogStream, offset: int = 0, *, attempt: int | None = None
    ) -> LogChunk:
        """One stream from byte `offset`, a bounded chunk; ask again from `next_offset` until `complete`."""
        params: dict[str, str | int] = {"stream": stream, "offset": offset}
        if attempt is not None:
            params["attempt"] = attempt
        return cast(LogChunk, self._json("GET", f"/calculations/{calculation_id}/logs", params=params))

    def follow_logs(
        self, calculation_id: str, streams: Sequence[LogStream] = ("stdout", "stderr")
    ) -> Iterator[tuple[LogStream, str]]:
        """(stream, text) as the tool writes it, until the calculation has ended and all of it was
        read. A retried calculation's new attempt is followed on from its start. On a server that
        cannot read logs from an offset, the tails are polled instead."""
        try:
            first = self.log_chunk(calculation_id, streams[0])
        except ApiError as exc:
            if exc.status_code != 422:
                raise
            first = None
        if first is None or "next_offset" not in first:  # an older server: tails only
            yield from self._follow_tails(calculation_id, streams)
            return
        yield from self._follow_chunks(calculation_id, streams, first)

    def _follow_chunks(
        self, calculation_id: str, streams: Sequence[LogStream], first: LogChunk
    ) -> Iterator[tuple[LogStream, str]]:
        attempt = first["attempt"]
        offsets = dict.fromkeys(streams, 0)
        ended: set[LogStream] = set()
        pending: LogChunk | None = first
        pause = _FIRST_POLL_SECONDS
        while True:
            progressed = False
            for stream in streams:
                if stream in ended:
                    continue
                chunk = pending or self.log_chunk(calculation_id, stream, offsets[stream], attempt=attempt)
                pending = None
                if chunk["data"]:
                    yield stream, chunk["data"]
                progressed = progressed or chunk["next_offset"] > chunk["offset"]
                offsets[stream] = chunk["next_offset"]
                if chunk["complete"]:
                    ended.add(stream)
            if len(ended) == len(streams):
                latest = self.get_calculation(calculation_id)["attempts"]
                if latest <= attempt:
                    return
                attempt, offsets, ended = attempt + 1, dict.fromkeys(streams, 0), set()  # retried
                continue
            if progressed:
                pause = _FIRST_POLL_SECONDS
            else:
                time.sleep(pause)
                pause = min(pause * 1.5, self.poll_seconds)

    def _follow_tails(self, calculation_id: str, streams: Sequence[LogStream]) -> Iterator[tuple[LogStream, str]]:
        seen: dict[LogStream, str] = dict.fromkeys(streams, "")
        attempt = 0
        while True:
            # the state first: once it is final, the logs read after it are complete
            state = self.get_calculation(calculation_id)["state"]
            logs = self.logs(calculation_id)
            if logs["attempt"] != attempt:
                attempt, seen = logs["attempt"], dict.fromkeys(streams, "")
            for stream in streams:
                if new := unseen_text(seen[stream], logs[stream]):
                    yield stream, new
                seen[stream] = logs[stream]
            if state in TERMINAL_STATES:
                return
            time.sleep(self.poll_seconds)

    # -- workflows ------------------------------------------------------------------------------

    def list_workflows(self) -> list[Workflow]:
        """The deployed workflows, `pipeline` among them."""
        return cast(list[Workflow], self._json("GET", "/workflows"))

    def get_workflow(self, name: str) -> Workflow:
        return cast(Workflow, self._json("GET", f"/workflows/{name}"))

    def run_workflow(
        self,
        name: str,
        params: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        notify: Notify | None = None,
    ) -> WorkflowRun:
        """Launch a workflow run; with `notify`, a signed event is POSTed to its URL at each of its states."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        body: dict[str, Any] = {"params": dict(params or {})}
        if notify is not None:
            body["notify"] = dict(notify)
        return cast(WorkflowRun, self._json("POST", f"/workflows/{name}/runs", json=body, headers=headers))

    def run_pipeline(
        self, steps: Mapping[str, Any], *, idempotency_key: str | None = None, notify: Notify | None = None
    ) -> WorkflowRun:
        """Launch the built-in `pipeline` workflow: a DAG of tools (`{"genes": {"tool": …, "inputs": …}}`)."""
        return self.run_workflow("pipeline", {"steps": dict(steps)}, idempotency_key=idempotency_key, notify=notify)

    # -- notifications ----------------------------------------------------------------------------

    def list_notifications(
        self, *, run: str | None = None, status: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[Notification]:
        """Your notifications, newest first: of one run (`run`), or only `pending`, `delivered`, `failed`."""
        return cast(
            list[Notification], self._items("/notifications", limit=limit, offset=offset, run=run, status=status)
        )

    def get_notification(self, notification_id: str) -> Notification:
        return cast(Notification, self._json("GET", f"/notifications/{notification_id}"))

    def get_webhook_secret(self) -> WebhookSecret:
        """Your webhook secret (made on first need): verify each notification's X-Emgapi-Signature with it."""
        return cast(WebhookSecret, self._json("GET", "/users/me/webhook-secret"))

    def rotate_webhook_secret(self) -> WebhookSecret:
        """A new webhook secret: every delivery from now on, retries too, is signed with it."""
        return cast(WebhookSecret, self._json("POST", "/users/me/webhook-secret"))

    def get_workflow_run(self, run_id: str) -> WorkflowRun:
        return cast(WorkflowRun, self._json("GET", f"/workflow-runs/{run_id}"))

    def get_workflow_run_progress(self, run_id: str) -> WorkflowRunProgress:
        """The run's state and how many of its steps are in each state, without the steps (a large
        run's whole answer lists every step with its outputs): cheap to poll."""
        return cast(WorkflowRunProgress, self._json("GET", f"/workflow-runs/{run_id}/progress"))

    def list_workflow_runs(
        self, *, state: str | None = None, workflow: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[WorkflowRunSummary]:
        """Your workflow runs, newest first."""
        return cast(
            list[WorkflowRunSummary],
            self._items("/workflow-runs", limit=limit, offset=offset, state=state, workflow=workflow),
        )

    def cancel_workflow_run(self, run_id: str) -> WorkflowRun:
        """Stop a run and every step in flight."""
        return cast(WorkflowRun, self._json("POST", f"/workflow-runs/{run_id}/cancel"))

    def rerun_workflow_run(self, run_id: str) -> WorkflowRun:
        """Run a COMPLETE workflow run again to verify it, step by step (`rerun_calculation`)."""
        return cast(WorkflowRun, self._json("POST", f"/workflow-runs/{run_id}/rerun"))

    def wait_workflow_run(
        self,
        run_id: str,
        *,
        timeout_seconds: float | None = None,
        on_update: Callable[[WorkflowRun], None] | None = None,
    ) -> WorkflowRun:
        """Poll until the run is final (a PAUSED run waits for an operator: this goes on waiting), then
        read it whole. Without `on_update`, which sees the whole run at every poll, only its progress is
        polled (`get_workflow_run_progress`; the whole run from a server without that route)."""
        if on_update is None:
            try:
                self._wait(lambda: self.get_workflow_run_progress(run_id), timeout_seconds, None)
            except ApiError as exc:
                if exc.status_code != 404:
                    raise
                # an older server, or no such run: the whole run says which
                return self._wait(lambda: self.get_workflow_run(run_id), timeout_seconds, None)
            return self.get_workflow_run(run_id)
        return self._wait(lambda: self.get_workflow_run(run_id), timeout_seconds, on_update)


def _output_ids(calculation: Calculation) -> list[str]:
    return [file_id for _, file_ids in sorted(calculation["outputs"].items()) for file_id in file_ids]


def _check_sha256(path: Path, file: File, local: str) -> None:
    if file["sha256"] != local:
        raise ChecksumMismatch(
            f"{path}: the server stored sha256 {file['sha256']} (file {file['id']}), the local file's is {local}"
        )
