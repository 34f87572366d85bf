"""Fixtures of the tuning tests: a real PostgreSQL server."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def _postgres_bin() -> Path | None:
    """The folder holding initdb and pg_ctl, or None when PostgreSQL is not installed."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """URL of a PostgreSQL server started for the module in a temporary folder (as the
    ``postgres`` user when the tests run as root, which PostgreSQL refuses to be)."""
    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL binaries (initdb, pg_ctl) on this machine")
    as_root = hasattr(os, "geteuid") and os.geteuid() == 0
    prefix: list[str] = []
    if as_root:
        import pwd

        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run PostgreSQL as")
        runuser = shutil.which("runuser")
        prefix = [runuser, "-u", "postgres", "--"] if runuser else ["su", "postgres", "-c"]
    folder = Path(tempfile.mkdtemp(prefix="agentgpt-pg-"))
    data, log = folder / "data", folder / "server.log"
    if as_root:
        os.chown(folder, user.pw_uid, user.pw_gid)
    port = _free_port()

    def run(*args: str) -> subprocess.CompletedProcess:
        command = [str(bindir / args[0]), *args[1:]]
        if prefix and prefix[-1] == "-c":  # su takes one shell command line
            import shlex

            command = [*prefix, shlex.join(command)]
        else:
            command = [*prefix, *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=folder)

    init = run("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    if init.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.fail(f"initdb failed: {init.stderr.strip()}")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    start = run("pg_ctl", "-D", str(data), "-o", options, "-l", str(log), "-w", "start")
    if start.returncode != 0:
        text = log.read_text() if log.exists() else start.stderr
        shutil.rmtree(folder, ignore_errors=True)
        pytest.fail(f"PostgreSQL did not start: {text.strip()[-2000:]}")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)
