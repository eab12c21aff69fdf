"""Singer output: RECORD messages built cheaply, msgspec-encoded lines written in blocks.

The SDK's writers flush stdout after each message, a system call per record. Here
RECORD lines collect in memory until the next STATE (or SCHEMA) message, or until
``BLOCK`` bytes have collected, and go out in one write: a STATE is the only moment
a target can act on them anyway, since state is what it commits. If the process
dies before that write, the lost records were not covered by any emitted state
either, so the next run reads them again.

Fewer writes matter beyond the system calls: every write releases the interpreter
lock, and the thread writing records then waits behind the threads decoding pages
to get it back.

Stopping (SIGTERM, SIGINT): a block goes out whole or not at all, and never twice.
A signal that arrives while a block is being written lets that write finish (to a
slow reader, that is when the reader has taken it) and stops the run right after;
any other moment, at once. Nothing is written after it: the last STATE on stdout
was written after every record it covers, so the next run, resuming from it, loses
nothing.
"""

from __future__ import annotations

import atexit
import sys
import time
from collections.abc import Generator
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from typing import Any

import msgspec
from singer_sdk import Stream, Tap
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.mapper import SameRecordTransform
from singer_sdk.singerlib.encoding.base import SingerMessageType
from singer_sdk.singerlib.encoding.simple import Message, RecordMessage
from typing_extensions import override

from tap_tenios.errors import Interrupted

#: Bytes of RECORD lines held before they are written without waiting for a STATE.
BLOCK = 1 << 20


class RecordOutput(Stream):
    """A stream whose records already carry exactly the schema's types.

    Records are built field by field with the declared types (``records``), so the
    SDK's per-record type conformance (a third of its CPU) has nothing to do, and its
    walk over every field to drop deselected ones is skipped when none is.
    """

    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    def __init__(self, tap: Tap, *args: Any, **kwargs: Any) -> None:
        super().__init__(tap, *args, **kwargs)
        #: Where the tap writes its messages (a ``SingerWriter``, unless replaced).
        self.output = tap.message_writer

    @cached_property
    def every_field_selected(self) -> bool:
        """Whether the catalog keeps every field (the usual case)."""
        mask = self.mask
        return all(mask.get(("properties", name), True) for name in self.schema["properties"])

    @cached_property
    def plain_records(self) -> bool:
        """Whether RECORD lines can skip message objects: no stream map or flattening
        changes records, and the tap writes with ``SingerWriter``.
        """
        maps = self.stream_maps
        return (
            len(maps) == 1
            and type(maps[0]) is SameRecordTransform
            and not maps[0].flattening_enabled
            and maps[0].stream_alias == self.name
            and self._stream_version is None
            and isinstance(self.output, SingerWriter)
        )

    @override
    def _generate_record_messages(
        self, record: dict[str, Any]
    ) -> Generator[RecordMessage, None, None]:
        """The SDK's RECORD generation, minus its walk over every field of every record
        to drop deselected ones when none is deselected: a fifth of the tap's CPU
        (100k CDRs, ``make benchmark``'s CPU-bound case: 4.4 against 5.5 CPU seconds).
        Whenever fields are deselected (or conformance is on), the SDK's own code runs
        unchanged. (Private in the SDK, as is ``_stream_version``: guarded by a test.)
        """
        if not self.every_field_selected or (
            self.TYPE_CONFORMANCE_LEVEL is not TypeConformanceLevel.NONE
        ):
            yield from super()._generate_record_messages(record)
            return
        if self.plain_records:
            yield RecordLine(self.name, record)  # type: ignore[misc]
            return
        for stream_map in self.stream_maps:
            mapped = stream_map.transform(record)
            if mapped is not None:
                yield RecordMessage(
                    stream=stream_map.stream_alias,
                    record=mapped,
                    version=self._stream_version,
                    time_extracted=datetime.now(timezone.utc),
                )


@dataclass(slots=True)
class RecordLine(Message):
    """A RECORD message that ``SingerWriter`` encodes itself, the record straight into
    the block between a prefix built once per stream and a suffix built once a second
    (``time_extracted``), instead of a message object turned into a dict first.
    """

    stream: str
    record: dict[str, Any]

    def __post_init__(self) -> None:
        self.type = SingerMessageType.RECORD


#: Records as JSON: decimals as exact JSON numbers, as the SDK's msgspec writer does.
_ENCODER = msgspec.json.Encoder(decimal_format="number")


class SingerWriter(MsgSpecWriter):
    """The SDK's msgspec writer (exact decimals as JSON numbers), written in blocks."""

    def __init__(self) -> None:
        super().__init__()
        self._prefixes: dict[str, bytes] = {}
        self._second = -1
        self._suffix = b""
        self._block = bytearray()
        self._writing = False
        #: The signal that stopped the run, if one did: nothing is written after it.
        self.stopped_by: int | None = None
        atexit.register(self._drain_at_exit)

    def stop(self, signum: int) -> None:
        """Stop the run for a signal (called by the handler, on the main thread):
        at once, or, in the middle of a block, as soon as the block is written.
        """
        self.stopped_by = signum
        if not self._writing:
            raise Interrupted(signum)

    def write_record(self, line: RecordLine) -> None:
        """A RECORD line: the record encoded once, into the block."""
        prefix = self._prefixes.get(line.stream)
        if prefix is None:
            stream = _ENCODER.encode(line.stream)
            prefix = self._prefixes[line.stream] = (
                b'{"type":"RECORD","stream":' + stream + b',"record":'
            )
        now = time.time()
        if int(now) != self._second:
            self._second = int(now)
            moment = datetime.fromtimestamp(now, timezone.utc).replace(tzinfo=None)
            self._suffix = b',"time_extracted":"' + moment.isoformat().encode() + b'Z"}\n'
        block = self._block
        block += prefix
        _ENCODER.encode_into(line.record, block, -1)
        block += self._suffix
        if len(block) >= BLOCK:
            self._write()

    @override
    def write_message(self, message: Message) -> None:
        if self.stopped_by is not None:
            return
        if type(message) is RecordLine:
            self.write_record(message)
            return
        self._block += self.format_message(message)
        if not isinstance(message, RecordMessage):
            self.drain()
        elif len(self._block) >= BLOCK:
            self._write()

    def drain(self) -> None:
        """Write and flush what is held (nothing, once a signal stopped the run)."""
        if self.stopped_by is not None:
            return
        if self._block:
            self._write()
        sys.stdout.flush()

    def _write(self) -> None:
        """Write the whole block and flush it, then stop if a signal came meanwhile.

        An unbuffered stdout (``PYTHONUNBUFFERED``, set in many container images) is
        the raw file, whose one write may take only part of a block (a signal during a
        write to a full pipe): the rest is written after.
        """
        out = sys.stdout.buffer
        self._writing = True
        try:
            with memoryview(self._block) as block:
                done = 0
                while done < len(block):
                    done += out.write(block[done:]) or 0
            out.flush()
        finally:
            self._block.clear()
            self._writing = False
        if self.stopped_by is not None:
            raise Interrupted(self.stopped_by)

    def _drain_at_exit(self) -> None:
        """Records emitted by a run that ended without a STATE still reach the target."""
        if self._block:
            self.drain()
