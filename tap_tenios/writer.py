"""Singer output: msgspec-encoded lines written in blocks, whole or not at all.

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
from functools import cached_property
from typing import Any

import msgspec
from singer_sdk import Stream, Tap
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.singerlib.encoding.simple import Message, RecordMessage
from typing_extensions import override

from tap_tenios.errors import Interrupted

#: Bytes of RECORD lines held before they are written without waiting for a STATE.
BLOCK = 1 << 20


class RecordOutput(Stream):
    """A stream whose records already carry exactly the schema's types.

    Records are built field by field with the declared types (``records``), so the
    SDK's per-record type conformance (a third of its CPU) has nothing to do.
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


#: Records as JSON: decimals as exact JSON numbers, as the SDK's msgspec writer does;
#: ``time_extracted`` in RFC 3339, as msgspec spells every datetime.
_ENCODER = msgspec.json.Encoder(decimal_format="number")


class SingerWriter(MsgSpecWriter):
    """The SDK's msgspec writer (exact decimals as JSON numbers), written in blocks."""

    def __init__(self) -> None:
        super().__init__()
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

    @override
    def write_message(self, message: Message) -> None:
        if self.stopped_by is not None:
            return
        if type(message) is RecordMessage:
            # As ``format_message`` would, but encoded straight into the block.
            _ENCODER.encode_into(message.to_dict(), self._block, -1)
            self._block += b"\n"
        else:
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
