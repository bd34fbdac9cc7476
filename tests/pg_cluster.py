"""A throwaway PostgreSQL server, for the tests (``conftest.postgres_url``) and ``benchmarks/bench_engine.py --postgres``.

Debian's binaries (``apt-get install postgresql``, which ``make test`` does) make a new
cluster in a temporary directory, trusting local connections, on a free loopback port.
Debian's server refuses to run as root, so as root it runs as ``postgres`` (``runuser``).
The whole cycle takes seconds.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["cluster", "pg_bin"]


def pg_bin() -> Path | None:
    """The directory of PostgreSQL's server binaries (the newest Debian version), if installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def cluster(bindir: Path) -> Iterator[str]:
    """A new PostgreSQL server with ``bindir``'s binaries while in the block: the URL of its ``postgres``
    database (user ``postgres``, no password); stopped and deleted afterwards."""
    base = Path(tempfile.mkdtemp(prefix="procestra-pg-"))
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    if as_root:
        shutil.chown(base, "postgres", "postgres")
    port = _free_port()
    data = base / "data"
    try:
        subprocess.run(prefix + [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                       check=True, capture_output=True)
        subprocess.run(
            prefix + [str(bindir / "pg_ctl"), "-D", str(data), "-o",
                      f"-p {port} -k {base} -c listen_addresses=127.0.0.1", "-l", str(base / "log"), "-w", "start"],
            check=True, capture_output=True,
        )
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(prefix + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
