"""BATCH files: records written as JSON Lines files that the loader reads itself.

With ``batch_config`` set, the tap writes each stream's records into files and sends
the loader one BATCH message per file instead of a RECORD message per record: the
loader reads the file on its own, and what passes through the pipe (and through
Meltano, which relays every line) is a few messages per run. This module writes the
files; the stream decides when the bookmark may move (only once a file's BATCH
message is out, so a STATE never covers records that are in no announced file).

Why not the SDK's own batcher: it gzips at level 9 whatever the config says (most of
the tap's CPU in a BATCH run), encodes through stdlib ``json``, and leaves every file
behind. Here the configured compression is honoured: none, or gzip at level 1 (about
as small, several times cheaper); lines are encoded once with msgspec, decimals as
exact JSON numbers.

Files live in a folder per run under the configured root, named ``run-…``. A run
holds a lock on its folder while it lives (the lock goes with the process, however
it ends). The files hold personal data (caller numbers), so they go as soon as their
loader is done with them: a job removes them in the step after its loader
(``python -m tap_tenios.batch remove ROOT``, meltano.yml's
``tap-tenios-batches:remove``), and each run removes those of runs that have ended
when it starts (``sweep``), in case a job stopped before that step. A later run of
the same job starts only once the previous run's loader has exited, so nothing still
needs them; hence one root per extractor and loader.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

import msgspec

from tap_tenios.errors import TapRunError

try:  # POSIX; elsewhere nothing is locked and nothing is swept.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

#: What ``batch_config.encoding.format`` must be: the one format every SDK loader reads.
FORMAT = "jsonl"
#: The compressions written. A loader built on the SDK gunzips ``gzip`` and reads
#: anything else as plain lines.
COMPRESSIONS = ("none", "gzip")
#: gzip level: 1 makes files a little larger than 9 in a fraction of the CPU.
GZIP_LEVEL = 1
#: Records per file when ``batch_config`` does not say (the SDK's default).
DEFAULT_BATCH_SIZE = 10_000
#: Run folders are named ``run-<UTC time>-<pid>-<random>``.
RUN_PREFIX = "run-"
#: The file a run keeps locked inside its folder while it lives.
LOCK_NAME = ".lock"
#: Bytes of encoded lines gathered before each write to the file.
CHUNK = 1 << 20

Record = dict[str, Any]


class BatchSettingsError(ValueError):
    """A ``batch_config`` this tap cannot honour; the message names the setting."""


@dataclass(frozen=True)
class BatchSettings:
    """The tap's ``batch_config``, checked: local folder, JSON Lines, compression."""

    root: Path
    prefix: str
    compression: str
    batch_size: int

    @property
    def suffix(self) -> str:
        return ".jsonl.gz" if self.compression == "gzip" else ".jsonl"

    @property
    def encoding(self) -> dict[str, str | None]:
        """The ``encoding`` of the BATCH messages: what the loader reads the files as."""
        return {"format": FORMAT, "compression": "gzip" if self.compression == "gzip" else None}

    @classmethod
    def from_config(cls, raw: Mapping[str, Any]) -> BatchSettings:
        """Check a ``batch_config`` mapping; every problem is named in one error."""
        problems: list[str] = []
        encoding = raw.get("encoding") or {}
        storage = raw.get("storage") or {}
        if not isinstance(encoding, Mapping) or not isinstance(storage, Mapping):
            raise BatchSettingsError("batch_config: 'encoding' and 'storage' must be objects")
        form = encoding.get("format")
        if form != FORMAT:
            problems.append(f"batch_config.encoding.format: {form!r} is not supported; use 'jsonl'")
        compression = encoding.get("compression") or "none"
        if compression not in COMPRESSIONS:
            problems.append(
                f"batch_config.encoding.compression: {compression!r} is not supported; "
                "use 'gzip' or 'none'"
            )
        root = storage.get("root")
        path: Path | None = None
        if not isinstance(root, str) or not root:
            problems.append("batch_config.storage.root: missing; a local folder (file://...)")
        else:
            path = local_path(root)
            if path is None:
                problems.append(
                    f"batch_config.storage.root: {root!r} is not a local folder; the "
                    "loader reads the files from this machine (file:///path or /path)"
                )
        prefix = storage.get("prefix") or ""
        if not isinstance(prefix, str) or "/" in prefix or os.sep in prefix:
            problems.append("batch_config.storage.prefix: must be a file name prefix")
        size = raw.get("batch_size")
        size = DEFAULT_BATCH_SIZE if size is None else size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            problems.append(f"batch_config.batch_size: {size!r} must be a positive integer")
        if problems:
            raise BatchSettingsError("; ".join(problems))
        assert path is not None
        return cls(path, str(prefix), str(compression), int(size))


class BatchWriteError(TapRunError):
    """The files cannot be written where ``batch_config`` says (a file in the way, no
    permission, a full disk): one line naming the folder, not a traceback.
    """


@contextmanager
def writing(folder: Path, file: str | None = None) -> Iterator[None]:
    """Turn a failure of the file system under ``folder`` into a ``BatchWriteError``."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, (FileExistsError, NotADirectoryError)):
            reason = "a file stands where a folder should be"
        else:
            reason = exc.strerror or type(exc).__name__
        if file:
            reason += f" (writing {file})"
        raise BatchWriteError(
            f"Cannot write BATCH files in {folder}: {reason}. Free space or grant write "
            "access there, or set batch_config.storage.root to another folder."
        ) from exc


def local_path(root: str) -> Path | None:
    """The local folder a storage root names (``file:///a/b`` or ``/a/b``), if it is one."""
    parts = urlsplit(root)
    if parts.scheme == "file" and parts.netloc in ("", "localhost"):
        path = Path(unquote(parts.path))
    elif not parts.scheme:
        path = Path(root)
    else:
        return None
    return path.expanduser().absolute()


class RunFolder:
    """The folder of one run's files, locked for as long as the run's process lives.

    It is created under another name and renamed once locked, so a folder named
    ``run-…`` always has its lock file and ``sweep`` can always tell whether the run
    that owns it is still alive. The lock is a bare descriptor, held until ``release``
    or the end of the process (the kernel drops it however the process ends).
    """

    def __init__(self, path: Path, lock: int | None) -> None:
        self.path = path
        self._lock = lock

    @classmethod
    def create(cls, root: Path, clock: Callable[[], float] = time.time) -> RunFolder:
        """A new run folder under ``root`` (made if missing); ``BatchWriteError`` if it
        cannot be.
        """
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(clock()))
        name = f"{RUN_PREFIX}{stamp}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        making = root / f".{name}.new"
        with writing(root):
            root.mkdir(parents=True, exist_ok=True)
            making.mkdir()
            lock = os.open(making / LOCK_NAME, os.O_WRONLY | os.O_CREAT, 0o644)
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            making.rename(root / name)
        return cls(root / name, lock)

    def release(self) -> None:
        """Give up the lock (the process ending does the same); the files stay."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def remove_if_empty(self) -> bool:
        """Remove the folder of a run that wrote no file (only its lock is there)."""
        if any(path.name != LOCK_NAME for path in self.path.iterdir()):
            return False
        self.release()
        shutil.rmtree(self.path, ignore_errors=True)
        return True


def sweep(
    root: Path,
    *,
    grace: float = 0.0,
    keep: Path | None = None,
    clock: Callable[[], float] = time.time,
) -> list[Path]:
    """Remove the run folders under ``root`` whose runs ended more than ``grace``
    seconds ago.

    A run has ended when its lock can be taken; "when" is the folder's last change (its
    last file). Folders of live runs, recent ones, ``keep``, anything not named
    ``run-…`` and anything that cannot be removed (permissions) stay. Returns what was
    removed.
    """
    if fcntl is None or not root.is_dir():
        return []
    try:
        folders = sorted(root.iterdir())
    except OSError:
        return []  # not listable: creating the run's folder says why, if it matters
    removed = []
    for folder in folders:
        if not folder.name.startswith(RUN_PREFIX) or folder == keep or not folder.is_dir():
            continue
        try:
            if clock() - folder.stat().st_mtime < grace:
                continue
            with (folder / LOCK_NAME).open("rb") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its run is still going
                shutil.rmtree(folder)
        except OSError:
            continue  # removed meanwhile by another run's sweep, or not ours to remove
        removed.append(folder)
    return removed


#: Records as JSON: decimals as exact JSON numbers, as in RECORD lines.
_ENCODER = msgspec.json.Encoder(decimal_format="number")


class BatchFile:
    """One file being written: each record encoded once, straight into a chunk that
    is written (and compressed) a MiB at a time.
    """

    def __init__(self, path: Path, compression: str) -> None:
        self.path = path
        self.records = 0
        self._raw = path.open("wb")
        self._out: IO[bytes] | gzip.GzipFile = self._raw
        if compression == "gzip":
            self._out = gzip.GzipFile(fileobj=self._raw, mode="wb", compresslevel=GZIP_LEVEL)
        self._buffer = bytearray()

    @property
    def url(self) -> str:
        return self.path.as_uri()

    def add(self, record: Mapping[str, Any]) -> None:
        buffer = self._buffer
        _ENCODER.encode_into(record, buffer, -1)
        buffer += b"\n"
        self.records += 1
        if len(buffer) >= CHUNK:
            self._out.write(buffer)
            buffer.clear()

    def finish(self) -> str:
        """Write what is gathered and close the file; its URL for the BATCH message."""
        self._out.write(self._buffer)
        self._buffer.clear()
        self._out.close()
        self._raw.close()
        return self.url

    def discard(self) -> None:
        """Close and delete a file no BATCH message will name (also one whose writes
        failed: closing it fails again, and it goes all the same).
        """
        with suppress(OSError):
            self._out.close()
        with suppress(OSError):
            self._raw.close()
        self.path.unlink(missing_ok=True)


def write_batches(
    records: Iterable[Record],
    folder: Path,
    stream: str,
    settings: BatchSettings,
    transform: Callable[[Record], Record | None] | None = None,
) -> Generator[tuple[str, Record], None, None]:
    """Write ``records`` into files of ``settings.batch_size``; yield each finished
    file's URL with the last record read into it.

    The bookmark may move to that record once the file's BATCH message is out.
    ``transform`` shapes each record as written (stream maps, deselected fields) or
    drops it (``None``); the last record *read* still counts for the bookmark.

    A failure of ``records`` (a window that could not be read) first finishes the
    file being written and yields it: its records are complete and whatever state
    follows must be able to cover them. A failure while writing (``BatchWriteError``,
    naming the folder), or an interruption (``SystemExit`` from a signal,
    ``KeyboardInterrupt``, the caller stopping), deletes the unfinished file instead,
    which no message names.
    """
    number = 0
    current: BatchFile | None = None
    last: Record | None = None
    source = iter(records)

    def finish() -> str:
        assert current is not None
        with writing(folder, current.path.name):
            return current.finish()

    try:
        while True:
            try:
                record = next(source)
            except StopIteration:
                break
            except Exception:
                if current is not None and last is not None:
                    url = finish()
                    current = None
                    yield url, last
                raise
            if current is None:
                number += 1
                name = f"{settings.prefix}{stream}-{number:05d}{settings.suffix}"
                with writing(folder, name):
                    current = BatchFile(folder / name, settings.compression)
            shaped = record if transform is None else transform(record)
            if shaped is not None:
                with writing(folder, current.path.name):
                    current.add(shaped)
            last = record
            if current.records >= settings.batch_size:
                url = finish()
                current = None
                yield url, last
        if current is not None and last is not None:
            url = finish()
            current = None
            yield url, last
    finally:
        if current is not None:
            current.discard()


def main(argv: list[str] | None = None) -> int:
    """``python -m tap_tenios.batch remove ROOT``: remove the files of ended runs."""
    parser = argparse.ArgumentParser(
        prog="python -m tap_tenios.batch",
        description="Remove the BATCH files of the tap's ended runs under ROOT (the "
        "batch_config.storage.root), once their loader has read them. Live runs' "
        "files stay.",
    )
    parser.add_argument("command", choices=["remove"])
    parser.add_argument("root", help="file:///path or /path")
    args = parser.parse_args(argv)
    root = local_path(args.root)
    if root is None:
        parser.error(f"{args.root!r} is not a local folder")
    removed = sweep(root)
    print(f"Removed the BATCH files of {len(removed)} ended run(s) under {root}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
