"""A JSON-lines file that is appended to and, now and then, rewritten with what is still worth keeping:
the two journals behind Event calls (admit/journal.py, record/results.py).

Appends are flushed (and fsynced when asked) one line at a time. The owner says what a rewrite keeps;
the file is rewritten atomically (a temporary file, fsynced, renamed over it: a crash leaves the old
file or the new one). While running, a rewrite comes once the lines appended since the last one reach
twice those it kept (and `compact_min_lines`), so the cost per append stays constant however long the
run. Callers hold their own lock around every method.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Callable, Iterable

log = logging.getLogger("mk1.jsonl")


def line(entry: dict) -> bytes:
    return (json.dumps(entry, separators=(",", ":")) + "\n").encode()


class JsonLines:
    def __init__(self, path: Path, compact_min_lines: int):
        self.path, self.compact_min = path, compact_min_lines
        self._file = None
        self._appended, self._kept = 0, 0

    def append(self, entry: dict, sync: bool, compact: Callable[[], Iterable[dict]]) -> None:
        """One line; then, if one is due, a rewrite with the entries `compact()` gives."""
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "ab")
        self._file.write(line(entry))
        self._file.flush()
        if sync:
            os.fsync(self._file.fileno())
        self._appended += 1
        if self._appended >= max(self.compact_min, 2 * self._kept):
            try:
                self.rewrite(compact())
            except OSError as e:   # the appends stand (each flushed above); try again later
                log.warning("could not compact %s: %s", self.path, e)
                self._appended = 0

    def rewrite(self, entries: Iterable[dict]) -> None:
        """The file becomes these entries (which may be read from it as they are written)."""
        if self._file is not None:   # appends go to the new file from here on
            self._file.close()
            self._file = None
        tmp = self.path.with_suffix(".tmp")
        kept = 0
        with open(tmp, "wb") as f:
            for entry in entries:
                f.write(line(entry))
                kept += 1
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._appended, self._kept = 0, kept

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
