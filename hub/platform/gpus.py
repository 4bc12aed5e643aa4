"""The machine's GPU inventory and the lease table that servers and jobs share.

A lease is one row per GPU device in ``gpu_leases``; the device is the primary key, so two
holders can never hold the same GPU, whatever process (hub or executor) asks, and on SQLite
or PostgreSQL alike. A holder is a string such as ``server:alice/`` or ``job:42``. Leases
carry the pid of the process that uses them, so leases of crashed processes can be reaped.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from datetime import datetime, timezone

import sqlalchemy as sa
from traitlets import Any, List, Unicode, default
from traitlets.config import LoggingConfigurable

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
        engine = sa.create_engine(self.db_url, future=True)
        if engine.dialect.name == "sqlite":
            # Serialise writers across processes: BEGIN IMMEDIATE takes the write lock up front.
            @sa.event.listens_for(engine, "connect")
            def _sqlite_pragmas(dbapi_conn, _):
                dbapi_conn.isolation_level = None
                dbapi_conn.execute("PRAGMA busy_timeout = 30000")

            @sa.event.listens_for(engine, "begin")
            def _begin_immediate(conn):
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":  # several processes may create it at once
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7204641186)"))
            metadata.create_all(conn)
        return engine

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

    def reap(self, holder_prefix: str = "", keep: set[str] = frozenset()) -> list[str]:
        """Free leases on this host whose process is gone (after a crash), except holders in ``keep``."""
        host = socket.gethostname()
        freed = []
        for lease in self.leases():
            if lease["host"] != host or not lease["holder"].startswith(holder_prefix) or lease["holder"] in keep:
                continue
            if not pid_alive(lease["pid"]):
                freed += self.release(lease["holder"])
        return freed
