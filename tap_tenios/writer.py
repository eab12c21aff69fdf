"""Singer output: msgspec-encoded lines, written in blocks, flushed at every message
but RECORD.

The SDK's writers flush stdout after each message, a system call per record. Here
RECORD lines collect in memory until the next STATE (or SCHEMA) message, or until
``BLOCK`` bytes have collected, and go out in one write: a STATE is the only moment
a target can act on them anyway, since state is what it commits. If the process
dies before that write, the lost records were not covered by any emitted state
either, so the next run reads them again.

Fewer writes matter beyond the system calls: every write releases the interpreter
lock, and the thread writing records then waits behind the threads decoding pages
to get it back.
"""

from __future__ import annotations

import atexit
import sys

from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.singerlib.encoding.simple import Message, RecordMessage
from typing_extensions import override

#: Bytes of RECORD lines held before they are written without waiting for a STATE.
BLOCK = 1 << 20


class SingerWriter(MsgSpecWriter):
    """The SDK's msgspec writer (exact decimals as JSON numbers), written in blocks."""

    def __init__(self) -> None:
        super().__init__()
        self._block = bytearray()
        atexit.register(self._drain_at_exit)

    @override
    def write_message(self, message: Message) -> None:
        self._block += self.format_message(message)
        if not isinstance(message, RecordMessage):
            self.drain()
        elif len(self._block) >= BLOCK:
            self._write()

    def drain(self) -> None:
        """Write and flush what is held."""
        if self._block:
            self._write()
        sys.stdout.flush()

    def _write(self) -> None:
        """Write the whole block. An unbuffered stdout (``PYTHONUNBUFFERED``, set in
        many container images) is the raw file, whose one write may take only part of
        a block (a signal during a write to a full pipe): the rest is written after.
        """
        out = sys.stdout.buffer
        with memoryview(self._block) as block:
            done = 0
            while done < len(block):
                done += out.write(block[done:]) or 0
        self._block.clear()

    def _drain_at_exit(self) -> None:
        """Records emitted by a run that ended without a STATE still reach the target."""
        if self._block:
            self.drain()
