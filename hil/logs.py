"""Logging for the command line: `hil -v` / `-vv` on stderr, `hil --log-file PATH` for post-mortems.

stderr gets hil's messages at INFO (-v) or DEBUG (-vv), never the wire traffic: stdout stays
the console's and `--json`'s alone. The log file gets everything hil logs at DEBUG, as JSON
lines, including one line per frame that any board's or measurement unit's link sent or
received (hw/channel.py, logger `hil.wire`): docs/logging.md describes the lines.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from pathlib import Path

from hil.errors import BadInput
from hil.hw.channel import WIRE_LOG

STDERR_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonLines(logging.Formatter):
    """One JSON object a line: the time (UTC, microseconds), the logger, and either the frame's
    fields (a `hil.wire` record) or the level and message."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="microseconds"),
                 "logger": record.name}
        wire = getattr(record, "wire", None)
        if wire is not None:
            entry.update(wire)
        else:
            entry.update(level=record.levelname, message=record.getMessage())
            if record.exc_info:
                entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class _NotWire(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(WIRE_LOG.name)


def configure(verbosity: int, log_file: Path | None) -> None:
    """`verbosity` 1: INFO, 2 or more: DEBUG, on stderr (0: Python's default, warnings only);
    `log_file`: everything hil logs, DEBUG and the wire included, as JSON lines."""
    hil = logging.getLogger("hil")
    if verbosity > 0:
        level = logging.INFO if verbosity == 1 else logging.DEBUG
        stderr = logging.StreamHandler(sys.stderr)
        stderr.setFormatter(logging.Formatter(STDERR_FORMAT))
        stderr.addFilter(_NotWire())  # a frame per line, thousands a run: the wire goes to a file only
        stderr.setLevel(level)
        logging.getLogger().addHandler(stderr)
        logging.getLogger().setLevel(level)
        hil.setLevel(level)
    WIRE_LOG.setLevel(logging.DEBUG if log_file is not None else logging.WARNING)
    if log_file is None:
        return
    try:
        handler = logging.FileHandler(log_file, mode="a", encoding="utf-8")
    except OSError as error:
        raise BadInput(f"--log-file {log_file}: cannot write it ({error.strerror}); name a file in a "
                       "folder you can write") from None
    handler.setFormatter(JsonLines())
    handler.setLevel(logging.DEBUG)
    hil.addHandler(handler)
    hil.setLevel(logging.DEBUG)
