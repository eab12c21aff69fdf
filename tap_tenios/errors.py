"""The tap's own failures: what ends a run with one line that says what to do.

No SDK imports, so the transport (which raises most of them) stays free of the SDK.
"""

from __future__ import annotations

import json
import signal


class TapRunError(Exception):
    """An expected failure: its message says what went wrong and what to do.

    The command line shows it as one line (a traceback only at debug level).
    ``stops_run`` marks failures that every other request would meet too (a
    rejected key, an unreachable API): the run stops instead of trying the other
    stream.
    """

    stops_run = False


class TeniosAPIError(TapRunError):
    """The API refused a request, kept failing, or answered what the tap cannot trust."""


class RunWideAPIError(TeniosAPIError):
    """A failure every request would meet: no point in running the other stream."""

    stops_run = True


class MalformedResponseError(ValueError):
    """A 200 whose body is not the JSON the endpoint documents: retried like a 5xx."""


class Interrupted(BaseException):
    """SIGTERM or SIGINT: the run stops where its output is whole, and exits non-zero.

    A ``BaseException``, like ``KeyboardInterrupt``: no ``except Exception`` on the
    way out may take it for a failure to handle.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """128 + the signal's number (143 for SIGTERM, 130 for SIGINT), as shells do."""
        return 128 + self.signum


class RunReport:
    """The failures of one run, by stream: one stream's failure does not stop the other.

    Shared by the tap and its streams. A failure that every request would meet
    (``stops_run``) stops the streams that have not started yet.
    """

    def __init__(self) -> None:
        self.failures: list[tuple[str, TapRunError]] = []
        self._started: set[str] = set()

    def begin(self, stream: str) -> bool:
        """Note that ``stream`` starts; whether it should run (the run has not stopped).

        A stream that starts a second time means the tap object syncs again: what the
        previous sync saw is forgotten.
        """
        if stream in self._started:
            self.failures.clear()
            self._started.clear()
        self._started.add(stream)
        return not any(failure.stops_run for _, failure in self.failures)

    def add(self, stream: str, failure: TapRunError) -> None:
        self.failures.append((stream, failure))

    def raise_failures(self) -> None:
        """Raise what failed, as one error naming each stream's failure."""
        if len(self.failures) == 1:
            raise self.failures[0][1]
        if self.failures:
            raise TapRunError(
                f"{len(self.failures)} streams failed: "
                + " | ".join(f"{name}: {failure}" for name, failure in self.failures)
            )


def redact(text: str, secret: str | None) -> str:
    """``text`` with every spelling of ``secret`` (raw, JSON-escaped) replaced."""
    if not secret:
        return text
    for spelling in {secret, json.dumps(secret)[1:-1], secret.strip()}:
        if spelling:
            text = text.replace(spelling, "[redacted]")
    return text


def api_error(message: str, secret: str | None, *, stops_run: bool = False) -> TeniosAPIError:
    """An error safe to raise: the key is removed whatever ``message`` holds.

    ``stops_run``: every other request would fail the same way (see ``TapRunError``).
    """
    kind = RunWideAPIError if stops_run else TeniosAPIError
    return kind(redact(message, secret))
