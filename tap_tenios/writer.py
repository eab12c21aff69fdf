"""Singer output: msgspec-encoded lines, flushed at every message but RECORD.

The SDK's writers flush stdout after each message, a system call per record. Here
RECORD lines stay in the buffer until the next STATE (or SCHEMA) message flushes
them, which is the only moment a target can act on them anyway: state is what it
commits. If the process dies before that flush, the lost records were not covered
by any emitted state either, so the next run reads them again.
"""

from __future__ import annotations

import sys

from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.singerlib.encoding.simple import Message, RecordMessage
from typing_extensions import override


class SingerWriter(MsgSpecWriter):
    """The SDK's msgspec writer (exact decimals as JSON numbers), fewer flushes."""

    @override
    def write_message(self, message: Message) -> None:
        sys.stdout.buffer.write(self.format_message(message))
        if not isinstance(message, RecordMessage):
            sys.stdout.flush()
