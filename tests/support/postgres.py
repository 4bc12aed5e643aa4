"""A throwaway PostgreSQL server for tests: Debian's binaries, a temp dir, a free loopback port.

    server = PostgresServer().start()      # initdb + pg_ctl start -w (waits until it accepts connections)
    url = server.create_database()         # a fresh, empty database: postgresql+psycopg://...
    server.stop()                          # pg_ctl stop, then the temp dir is removed

PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` OS account (made
by Debian's ``postgresql`` package), else ``nobody``; otherwise as the current account. It listens on
127.0.0.1 only (no Unix socket) and asks for a password (scram-sha-256, random per server).

Its ``TimeZone`` is deliberately not UTC (as on many real servers): code must not assume that
timestamps come back in UTC just because they went in as UTC.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

SERVER_TIMEZONE = "Asia/Kolkata"  # +05:30 all year: never mistaken for UTC
SUPERUSER = "notebench"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries here (install Debian's ``postgresql`` package)."""


def find_bindir() -> Path:
    """The directory of initdb/pg_ctl: $PG_BINDIR, then PATH, then Debian's /usr/lib/postgresql/<newest>/bin."""
    if os.environ.get("PG_BINDIR"):
        return Path(os.environ["PG_BINDIR"])
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(re.sub(r"\D", "", Path(p).parts[-3]) or 0),
    )
    if found:
        return Path(found[-1]).parent
    raise PostgresUnavailable("PostgreSQL's initdb was not found (scripts/install --test installs Debian's 'postgresql')")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self, bindir: Path | None = None, account: str | None = None):
        self.bindir = Path(bindir) if bindir else find_bindir()
        if account is None and os.geteuid() == 0:
            names = {p.pw_name for p in pwd.getpwall()}
            account = "postgres" if "postgres" in names else "nobody"
        self.account = account  # None: run as ourselves
        self.password = secrets.token_hex(16)
        self.port: int | None = None
        self.dir: Path | None = None
        self._databases = 0

    # --- running commands as the server's account ---------------------------------------------

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        kw = {}
        if self.account:
            pw = pwd.getpwnam(self.account)
            kw = dict(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}
        result = subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            cwd=self.dir, env=env, capture_output=True, text=True, timeout=120, **kw,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}{self.log_tail()}")
        return result

    def log_tail(self, lines: int = 30) -> str:
        try:
            log = (self.dir / "server.log").read_text(errors="replace").splitlines()
        except (OSError, TypeError):
            return ""
        return "\n--- server.log ---\n" + "\n".join(log[-lines:])

    # --- life cycle ---------------------------------------------------------------------------

    def start(self, attempts: int = 3) -> "PostgresServer":
        self.dir = Path(tempfile.mkdtemp(prefix="notebench-pg-"))
        try:
            if self.account:
                pw = pwd.getpwnam(self.account)
                os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            pwfile = self.dir / "pwfile"
            pwfile.write_text(self.password + "\n")
            if self.account:
                os.chown(pwfile, pw.pw_uid, pw.pw_gid)
            self._run(
                "initdb", "-D", str(self.dir / "data"), "-U", SUPERUSER, f"--pwfile={pwfile}",
                "--auth=scram-sha-256", "--encoding=UTF8", "--no-locale", "--no-sync", "--no-instructions",
            )
            pwfile.unlink()
            with open(self.dir / "data" / "postgresql.conf", "a") as conf:
                conf.write(
                    "\n# notebench tests: loopback TCP only, disposable data\n"
                    "listen_addresses = '127.0.0.1'\n"
                    "unix_socket_directories = ''\n"
                    f"timezone = '{SERVER_TIMEZONE}'\n"
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                    "max_connections = 200\n"
                )
            for attempt in range(attempts):
                self.port = free_port()
                # -w: pg_ctl returns once the server accepts connections (or has failed); no polling here.
                result = self._run(
                    "pg_ctl", "-D", str(self.dir / "data"), "-l", str(self.dir / "server.log"),
                    "-o", f"-p {self.port}", "-w", "-t", "60", "start", check=False,
                )
                if result.returncode == 0:
                    break
                # Another process may have taken the port between free_port() and the bind: try another.
                if attempt == attempts - 1 or "could not bind" not in self.log_tail(10):
                    raise RuntimeError(f"PostgreSQL did not start:\n{result.stdout}{result.stderr}{self.log_tail()}")
            self._run("pg_isready", "-h", "127.0.0.1", "-p", str(self.port), "-t", "30")
            with self.admin() as conn:  # and it answers, with our password
                conn.execute("SELECT 1")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.dir is None:
            return
        if (self.dir / "data" / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "-t", "60", "stop", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def __enter__(self) -> "PostgresServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- databases -----------------------------------------------------------------------------

    def admin(self, dbname: str = "postgres"):
        import psycopg

        return psycopg.connect(
            host="127.0.0.1", port=self.port, user=SUPERUSER, password=self.password,
            dbname=dbname, autocommit=True, connect_timeout=30,
        )

    def url(self, dbname: str) -> str:
        """The SQLAlchemy URL of one of this server's databases (psycopg 3 driver)."""
        return f"postgresql+psycopg://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str | None = None) -> str:
        """A new, empty database; returns its SQLAlchemy URL."""
        if name is None:
            self._databases += 1
            name = f"test_{self._databases}"
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
