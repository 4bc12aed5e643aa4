"""Profiles (one definition for local and Kubernetes) and the GPU lease table (shared by processes)."""

import multiprocessing

import pytest
from traitlets.config import Config

from notebench.hub.platform.gpus import GPUInventory, NoFreeGPUs
from notebench.hub.platform.profiles import Profile, ProfileError, Profiles


def test_default_profiles_cpu_and_gpu():
    profiles = Profiles()
    assert [p.name for p in profiles.all()] == ["cpu", "gpu"]
    assert profiles.get(None).name == "cpu"
    assert profiles.get("gpu").gpus == 1
    assert profiles.get("gpu").mem_limit == 16 * 1024**3


def test_unknown_and_invalid_profiles_say_what_is_wrong():
    with pytest.raises(ProfileError, match="unknown profile 'tpu'; choose one of: cpu, gpu"):
        Profiles().get("tpu")
    with pytest.raises(ProfileError, match="gpus must be an integer"):
        Profile.from_dict({"name": "x", "gpus": -1})
    with pytest.raises(ProfileError, match="mem_limit 'lots'"):
        Profile.from_dict({"name": "x", "mem_limit": "lots"})
    with pytest.raises(ProfileError, match="unknown field"):
        Profile.from_dict({"name": "x", "cpus": 2})
    c = Config()
    c.Profiles.profiles = [{"name": "a"}, {"name": "a"}]
    with pytest.raises(ProfileError, match="unique"):
        Profiles(config=c).all()


def test_same_profiles_become_kubespawner_profile_list():
    entries = Profiles().kubespawner_profile_list()
    gpu = next(e for e in entries if e["slug"] == "gpu")
    assert gpu["kubespawner_override"]["extra_resource_limits"] == {"nvidia.com/gpu": "1"}
    cpu = next(e for e in entries if e["slug"] == "cpu")
    assert "extra_resource_limits" not in cpu["kubespawner_override"]
    assert cpu["default"] is True and cpu["kubespawner_override"]["mem_limit"] == 4 * 1024**3


def inventory(tmp_path, devices):
    c = Config()
    c.GPUInventory.devices = devices
    c.GPUInventory.db_url = f"sqlite:///{tmp_path / 'leases.sqlite'}"
    return GPUInventory(config=c)


def test_leases_are_exclusive_idempotent_and_released(tmp_path):
    inv = inventory(tmp_path, ["0", "1", "2"])
    assert inv.acquire("server:a/", 2) == ["0", "1"]
    assert inv.acquire("server:a/", 2) == ["0", "1"]  # asking again changes nothing
    assert inv.acquire("job:7", 1) == ["2"]
    with pytest.raises(NoFreeGPUs, match="1 GPU\\(s\\) requested but only 0 of 3 are free"):
        inv.acquire("job:8", 1)
    assert inv.release("server:a/") == ["0", "1"]
    assert inv.acquire("job:8", 2) == ["0", "1"]


def test_reap_frees_leases_of_dead_processes_only(tmp_path):
    import os
    import subprocess

    inv = inventory(tmp_path, ["0", "1"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    inv.acquire("server:gone/", 1, pid=dead.pid)
    inv.acquire("server:alive/", 1, pid=os.getpid())
    assert inv.reap("server:") == ["0"]
    assert [lease["holder"] for lease in inv.leases()] == ["server:alive/"]


def _grab(args):
    db_url, holder = args
    c = Config()
    c.GPUInventory.devices = ["0", "1", "2", "3"]
    c.GPUInventory.db_url = db_url
    try:
        return GPUInventory(config=c).acquire(holder, 1)
    except NoFreeGPUs:
        return []


def test_racing_processes_never_share_a_gpu(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'leases.sqlite'}"
    assert inventory(tmp_path, []).leases() == []  # creates the table before the race
    with multiprocessing.get_context("spawn").Pool(8) as pool:
        got = pool.map(_grab, [(db_url, f"job:{i}") for i in range(12)])
    handed_out = [d for devices in got for d in devices]
    assert sorted(handed_out) == ["0", "1", "2", "3"]  # each GPU once, the rest refused
