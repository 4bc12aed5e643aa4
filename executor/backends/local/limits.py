"""Profile limits for local jobs and scoring servers, as local servers get them (cgroup v2, where
the machine allows: hub/platform/cgroups.py). Their processes run before they are given their
work (warm pools), so root moves them into the group when it hands them a job or a model."""

from __future__ import annotations

from traitlets import Unicode
from traitlets.config import LoggingConfigurable

from notebench.hub.platform.cgroups import CgroupLimits


class ProfileLimits(LoggingConfigurable):
    cgroup_root = Unicode("/sys/fs/cgroup", help="The cgroup v2 hierarchy the profile limits are set in.").tag(config=True)

    @property
    def cgroups(self) -> CgroupLimits:
        return CgroupLimits(root=self.cgroup_root)

    def confine(self, name: str, cpu_limit: float | None, mem_limit: int | None, pids) -> None:
        if not (cpu_limit or mem_limit):  # nothing to limit: no cgroup, and no look at the hierarchy
            return
        cgroups = self.cgroups
        ok, why = cgroups.available()
        if not ok:
            self.log.debug("profile limits of %s are advisory: %s", name, why)
            return
        cgroups.confine(name, cpu_limit, mem_limit, pids)

    def release(self, name: str) -> None:
        self.cgroups.remove(name)


def combined(job: float | int | None, workers: int, worker: float | int | None):
    """The limit of a job with ``workers`` Dask workers in one group: None (no limit) if a part has none."""
    if job is None or (workers and worker is None):
        return None
    return job + workers * (worker or 0)
