"""Profile limits on local jobs and scoring servers, as local servers get them (cgroup v2).

These machines have cgroup v1, so the hierarchy is a stand-in directory that looks like a cgroup
v2 root (``cgroup.controllers`` with cpu and memory): what the executor writes there (the
groups, ``cpu.max``, ``memory.max``, and the pids moved into ``cgroup.procs``) is checked, the
kernel's enforcement is not. The job, the runner, the kernel and the scoring server are real.
"""

import uuid
from pathlib import Path

import pytest

from tests.support.launcher import notebook, running_hub, wait_for
from tests.support.registry import register_model

RUN = uuid.uuid4().hex[:6]


@pytest.fixture(scope="module")
def cgroup_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cgroup")
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cgroup.subtree_control").write_text("")
    return root


@pytest.fixture(scope="module")
def limited_hub(tmp_path_factory, cgroup_root):
    config = f"""
c.Profiles.profiles = [
    {{"name": "small", "cpu_limit": 0.5, "mem_limit": "1G", "default": True}},
    {{"name": "tiny", "cpu_limit": 0.25, "mem_limit": "512M"}},
]
c.LocalBackend.cgroup_root = {str(cgroup_root)!r}
c.LocalEndpointBackend.cgroup_root = {str(cgroup_root)!r}
c.Notebench.cull_idle_timeout = 0
"""
    with running_hub(tmp_path_factory, "limits", config) as hub:
        yield hub


def groups(root: Path, prefix: str) -> list[Path]:
    return sorted((root / "notebench").glob(f"{prefix}*"))


def test_a_jobs_runner_and_kernel_are_confined_to_its_profiles_limits(limited_hub, cgroup_root):
    user = f"lim-{RUN}"
    token = limited_hub.new_user(user)
    flag = f"/tmp/nb-limits-{RUN}"
    nb = notebook(f"import os, time\nwhile not os.path.exists({flag!r}): time.sleep(0.1)")
    job = limited_hub.executor("POST", "jobs", token, json={"notebook": nb, "profile": "tiny"}).json()
    group = wait_for(lambda: next(iter(groups(cgroup_root, "job-")), None), timeout=180, message="the job's cgroup")
    try:
        assert group.joinpath("cpu.max").read_text() == "25000 100000"
        assert group.joinpath("memory.max").read_text() == str(512 * 1024**2)
        running = limited_hub.wait_job(job["id"], token, until=("running",))
        assert running["status"] == "running"
        # The runner was confined before it was given the job: its pid is the group's (the last
        # pid written: a plain file stands in for cgroup.procs).
        runner_pid = int(group.name.split("-")[1])
        assert group.joinpath("cgroup.procs").read_text() in {str(runner_pid)} | {
            str(p) for p in _children(runner_pid)}
    finally:
        Path(flag).touch()
    assert limited_hub.wait_job(job["id"], token)["status"] == "succeeded"


def _children(pid: int) -> set[int]:
    import psutil

    try:
        return {c.pid for c in psutil.Process(pid).children(recursive=True)}
    except psutil.Error:
        return set()


def test_a_scoring_server_is_confined_to_its_endpoints_profile(limited_hub, cgroup_root):
    user = f"lim-ep-{RUN}"
    token = limited_hub.new_user(user)
    name = f"lim-{RUN}"
    register_model(limited_hub.url, token, f"m-{RUN}")
    r = limited_hub.executor("POST", "endpoints", token, json={
        "name": name, "profile": "tiny", "versions": [{"model": f"m-{RUN}", "version": "1", "weight": 100}]})
    assert r.status_code == 201, r.text
    group = wait_for(lambda: next(iter(groups(cgroup_root, "scoring-")), None), timeout=300, message="the server's cgroup")
    assert group.joinpath("cpu.max").read_text() == "25000 100000"
    assert group.joinpath("memory.max").read_text() == str(512 * 1024**2)
    assert group.joinpath("cgroup.procs").read_text().isdigit()
    limited_hub.executor("DELETE", f"endpoints/{name}", token)
