"""What reached the disk before a process said it had: its system calls, traced with strace.

A crash test (SIGKILL) cannot tell a commit that is on disk from one that is only in the
kernel's page cache: both survive the kill, and only the first survives a power loss.
The difference is an ``fsync``/``fdatasync`` of the written file between the write and the
moment the process acknowledges the commit. :func:`trace` runs a command under strace (:func:`traced` gives the command line)
(``make sysdeps`` installs it; a missing strace fails the test, it does not skip it), and
:func:`unsynced_at` lists, at each acknowledgement, the watched files written since their
last sync.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Ack", "trace", "traced", "unsynced_at"]

_WRITES = {"write", "pwrite64", "writev", "pwritev", "pwritev2"}
_SYNCS = {"fsync", "fdatasync"}
# "PID name(FD<path>, ..." (a whole call, or the start of an unfinished one)
_CALL = re.compile(r"^(?P<pid>\d+)\s+(?P<name>\w+)\((?P<fd>\d+)<(?P<path>[^>]*)>(?P<rest>.*)$")
# "PID <... name resumed>..."
_RESUMED = re.compile(r"^(?P<pid>\d+)\s+<\.\.\. (?P<name>\w+) resumed>")


@dataclass(frozen=True)
class Ack:
    """One acknowledgement seen in a trace: its line, and the watched files written and not synced then."""

    line: int
    unsynced: frozenset[str]


def traced(cmd: Sequence[str], out: Path) -> list[str]:
    """``cmd`` run under strace (all threads and children), which writes its writes and syncs to ``out``."""
    strace = shutil.which("strace")
    assert strace, "strace is missing; `make sysdeps` installs it (the durability tests need it)"
    calls = ",".join(sorted(_WRITES | _SYNCS))
    return [strace, "-f", "--seccomp-bpf", "-y", "-qq", "-s", "0", "-e", f"trace={calls}", "-o", str(out), *cmd]


def trace(cmd: Sequence[str], out: Path, *, env: dict[str, str] | None = None,
          timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run :func:`traced` ``cmd`` to its end."""
    return subprocess.run(traced(cmd, out), capture_output=True, text=True, env=env, timeout=timeout, check=False)


def unsynced_at(out: Path, watched: Callable[[str], bool], is_ack: Callable[[str, int, str], bool]) -> list[Ack]:
    """For each call ``is_ack(name, fd, path)`` in the trace, the ``watched`` files written and not yet synced.

    A write counts from its start (it may reach the file any time after); a sync counts
    from its end (the file is on disk only when it returns).
    """
    dirty: set[str] = set()
    pending: dict[str, str] = {}  # pid -> path of its unfinished sync
    acks: list[Ack] = []
    for n, line in enumerate(out.read_text().splitlines()):
        if m := _RESUMED.match(line):
            path = pending.pop(m["pid"], None)
            if path is not None and m["name"] in _SYNCS:
                dirty.discard(path)
            continue
        m = _CALL.match(line)
        if m is None:
            continue
        name, path = m["name"], m["path"]
        if is_ack(name, int(m["fd"]), path):
            acks.append(Ack(n, frozenset(dirty)))
        if name in _WRITES and watched(path):
            dirty.add(path)
        elif name in _SYNCS:
            if "<unfinished" in m["rest"]:
                pending[m["pid"]] = path
            else:
                dirty.discard(path)
    return acks
