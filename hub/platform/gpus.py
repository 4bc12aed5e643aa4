"""The machine's GPU inventory and the lease table that servers and jobs share.

A lease is one row per GPU device in ``gpu_leases``; the device is the primary key, so two
holders can never hold the same GPU, whatever process (hub or executor) asks, and on SQLite
or PostgreSQL alike. A holder is a string such as ``server:alice/`` or ``job:42``. Leases
carry the pid of the process that uses them, so leases of crashed processes can be reaped.

The lease store (``c.GPUInventory.db_url``, by default ``notebench.sqlite`` in the data dir) is
owned by Alembic migrations (hub/platform/migrations, version table ``alembic_version_platform``,
so it can share a database with the executor's history). The first use in a process upgrades it
to the newest revision (processes take turns on ``<file>.lock`` beside a SQLite file); a store made
before it was migrated (by ``create_all``) is adopted as is, leases kept.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Collection
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa
from traitlets import Any, List, Unicode, default
from traitlets.config import LoggingConfigurable

from notebench.hub.platform.sqlite import file_lock_beside, make_engine

MIGRATIONS = Path(__file__).parent / "migrations"
# Not Alembic's default "alembic_version": the executor's history may live in the same database.
VERSION_TABLE = "alembic_version_platform"

# Alembic runs env.py through module-global proxies (alembic.context): threads of one process
# upgrading at once would run each other's migrations, so they take turns.
_upgrade_in_process = threading.Lock()

metadata = sa.MetaData()

gpu_leases = sa.Table(
    "gpu_leases",
    metadata,
    sa.Column("device", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(255), nullable=False, index=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=True),
    sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
)


def upgrade(url: str) -> None:
    """Bring the lease store at ``url`` to the newest schema (idempotent; processes and threads may call it at once)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    # The hub and the executor both upgrade as they start: on SQLite they take turns on a file lock,
    # then the first makes the file WAL and migrates it, the others find it done.
    with _upgrade_in_process, file_lock_beside(url):
        command.upgrade(cfg, "head")


class NoFreeGPUs(RuntimeError):
    """Raised when a lease asks for more GPUs than are free; the message says how many are."""


def discover_gpus() -> list[str]:
    """GPU indices visible on this machine, via NVML if installed, else nvidia-smi; [] if none."""
    try:
        import pynvml  # nvidia-ml-py

        pynvml.nvmlInit()
        try:
            return [str(i) for i in range(pynvml.nvmlDeviceGetCount())]
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        pass
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run(
            [smi, "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip().isdigit()]


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class GPUInventory(LoggingConfigurable):
    """The GPUs of this machine and who holds them (``c.GPUInventory``)."""

    devices = List(
        Unicode(),
        default_value=None,
        allow_none=True,
        help="GPU device indices to hand out (as in CUDA_VISIBLE_DEVICES). Default: discovered with NVML/nvidia-smi.",
    ).tag(config=True)

    db_url = Unicode(help="SQLAlchemy URL of the database holding the lease table.").tag(config=True)

    engine = Any()

    _shared: dict = {}

    @classmethod
    def shared(cls, config) -> "GPUInventory":
        """One inventory (and one engine) per process for a given configuration."""
        key = id(config)
        if key not in cls._shared:
            cls._shared[key] = cls(config=config)
        return cls._shared[key]

    @default("engine")
    def _engine(self):
        upgrade(self.db_url)
        # BEGIN IMMEDIATE on SQLite: acquirers read the free GPUs and insert, one at a time.
        return make_engine(self.db_url, begin_immediate=True)

    def all_devices(self) -> list[str]:
        if self.devices is None:
            self.devices = discover_gpus()
        return list(self.devices)

    def leases(self) -> list[dict]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(gpu_leases).order_by(gpu_leases.c.device))]

    def acquire(self, holder: str, count: int, pid: int | None = None) -> list[str]:
        """Lease ``count`` free GPUs to ``holder`` (idempotent: a holder keeps what it has)."""
        if count <= 0:
            return []
        inventory = self.all_devices()
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # One acquirer at a time (as BEGIN IMMEDIATE does on SQLite); readers are not blocked.
                conn.exec_driver_sql("LOCK TABLE gpu_leases IN SHARE ROW EXCLUSIVE MODE")
            rows = conn.execute(sa.select(gpu_leases.c.device, gpu_leases.c.holder)).all()
            mine = [r.device for r in rows if r.holder == holder]
            if len(mine) >= count:
                return sorted(mine)[:count]
            taken = {r.device for r in rows}
            free = [d for d in inventory if d not in taken]
            need = count - len(mine)
            if len(free) < need:
                raise NoFreeGPUs(
                    f"{count} GPU(s) requested but only {len(free) + len(mine)} of {len(inventory)} are free"
                    + (" (this machine has no GPUs)" if not inventory else "; try again when another server or job stops")
                )
            now = datetime.now(timezone.utc)
            host = socket.gethostname()
            conn.execute(
                gpu_leases.insert(),
                [{"device": d, "holder": holder, "host": host, "pid": pid, "acquired_at": now} for d in free[:need]],
            )
            return sorted(mine + free[:need])

    def set_pid(self, holder: str, pid: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(gpu_leases.update().where(gpu_leases.c.holder == holder).values(pid=pid))

    def release(self, holder: str) -> list[str]:
        with self.engine.begin() as conn:
            devices = [r.device for r in conn.execute(sa.select(gpu_leases.c.device).where(gpu_leases.c.holder == holder))]
            conn.execute(gpu_leases.delete().where(gpu_leases.c.holder == holder))
        if devices:
            self.log.info("Released GPU(s) %s held by %s", ",".join(devices), holder)
        return devices

    def reap(self, holder_prefix: str = "", keep: Collection[str] = frozenset()) -> list[str]:
        """Free leases on this host whose process is gone (after a crash), except holders in ``keep``."""
        host = socket.gethostname()
        freed = []
        for lease in self.leases():
            if lease["host"] != host or not lease["holder"].startswith(holder_prefix) or lease["holder"] in keep:
                continue
            if not pid_alive(lease["pid"]):
                freed += self.release(lease["holder"])
        return freed
