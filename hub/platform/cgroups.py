"""CPU and memory limits for local servers, jobs and scoring servers through cgroup v2.

Only where the machine allows it: a unified (v2) hierarchy at ``root`` with the ``cpu`` and
``memory`` controllers, writable by us (root). Elsewhere ``available()`` says why not and
limits are advisory (exported as env only), which the hub logs and the README states.
"""

from __future__ import annotations

import os
from pathlib import Path

CPU_PERIOD_US = 100_000


class CgroupLimits:
    def __init__(self, root: str = "/sys/fs/cgroup", parent: str = "notebench"):
        self.root = Path(root)
        self.parent = self.root / parent

    def available(self) -> tuple[bool, str]:
        controllers = self.root / "cgroup.controllers"
        if not controllers.exists():
            return False, f"no cgroup v2 hierarchy at {self.root}"
        have = set(controllers.read_text().split())
        missing = {"cpu", "memory"} - have
        if missing:
            return False, f"cgroup v2 controllers {sorted(missing)} are not enabled at {self.root}"
        if not os.access(self.root, os.W_OK):
            return False, f"{self.root} is not writable (start Notebench as root to enforce limits)"
        return True, "cgroup v2"

    def create(self, name: str, cpu_limit: float | None, mem_limit: int | None) -> Path:
        """Make the cgroup ``notebench/<name>`` with the given limits; returns its path."""
        self.parent.mkdir(exist_ok=True)
        # Delegate the controllers to our children.
        (self.root / "cgroup.subtree_control").write_text("+cpu +memory")
        (self.parent / "cgroup.subtree_control").write_text("+cpu +memory")
        group = self.parent / name
        group.mkdir(exist_ok=True)
        (group / "cpu.max").write_text(f"{int(cpu_limit * CPU_PERIOD_US)} {CPU_PERIOD_US}" if cpu_limit else "max")
        (group / "memory.max").write_text(str(mem_limit) if mem_limit else "max")
        return group

    @staticmethod
    def enter(group: Path) -> None:
        """Move the calling process into ``group`` (used in a Popen preexec_fn)."""
        (group / "cgroup.procs").write_text(str(os.getpid()))

    def confine(self, name: str, cpu_limit: float | None, mem_limit: int | None, pids) -> Path:
        """Limit processes that already run: the group ``notebench/<name>`` with these limits, and
        ``pids`` moved into it (what they start later stays in it). Like ``create``, only where
        ``available()``."""
        group = self.create(name, cpu_limit, mem_limit)
        for pid in pids:
            try:
                (group / "cgroup.procs").write_text(str(pid))
            except ProcessLookupError:
                pass  # exited meanwhile
        return group

    def remove(self, name: str) -> None:
        try:
            (self.parent / name).rmdir()
        except OSError:
            pass  # still has processes (they are being killed) or never existed
