"""Domain errors; the API maps each to one HTTP status in one handler (emgapiv2/api.py)."""


class NotFound(LookupError):
    """The object does not exist or belongs to someone else (both answer 404)."""


class InvalidInput(ValueError):
    """The request is well-formed but its content is wrong (422)."""


class ManyInvalidInputs(InvalidInput):
    """Every problem a check found, not just the first (a crate's import): a 422 listing them all."""

    LISTED = 100  # a 1,000-genome crate without its data is a thousand "missing input"s: the first say it
    LONGEST = 1000  # characters of one problem: one may quote a value from the crate, which may be megabytes

    def __init__(self, summary: str, problems: list[str]) -> None:
        listed = [problem if len(problem) <= self.LONGEST else problem[: self.LONGEST - 1] + "…"
                  for problem in problems[: self.LISTED]]  # fmt: skip
        if len(problems) > self.LISTED:
            listed.append(f"and {len(problems) - self.LISTED} more problems like these")
        super().__init__(f"{summary}: " + "; ".join(listed[:3]) + ("; …" if len(listed) > 3 else ""))
        self.problems = listed


class Conflict(RuntimeError):
    """The object's current state does not allow this (409): say what would."""


class InvalidTransition(Conflict):
    """The calculation is not in a state that allows this change (409)."""


class Forbidden(PermissionError):
    """Authenticated, but the token may not do this (403): a read-only token on a write."""


class QuotaExceeded(Exception):
    """A per-user limit: too many calculations in flight (429) or storage full (413)."""

    status = 429


class StorageQuotaExceeded(QuotaExceeded):
    status = 413


class Unavailable(RuntimeError):
    """A service the request needs (Prefect's catalogue of workflows) does not answer (503)."""
