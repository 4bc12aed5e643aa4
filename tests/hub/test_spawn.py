"""Spawning and stopping servers with each profile; GPU leases; errors a user sees."""

import sqlite3

import requests

from tests.support.kernels import server_env
from tests.support.launcher import lab_page_config, wait_for


def server_pid(hub, name):
    state = hub.api("GET", f"/users/{name}").json()["servers"][""].get("state") or {}
    assert state.get("pid"), "the admin token can read server state"
    return state["pid"]


def leases(hub):
    with sqlite3.connect(hub.data_dir / "notebench.sqlite") as db:
        return dict(db.execute("select device, holder from gpu_leases").fetchall())


def test_cpu_profile_spawns_jupyterlab_behind_the_proxy(hub):
    token = hub.new_user("cpu-user")
    r = hub.spawn("cpu-user", "cpu", token=token)
    assert r.status_code in (201, 202), r.text
    # The user's own token reaches their JupyterLab through the one public port.
    status = requests.get(f"{hub.url}/user/cpu-user/api/status", headers={"Authorization": f"token {token}"})
    assert status.status_code == 200
    lab = requests.get(f"{hub.url}/user/cpu-user/lab", headers={"Authorization": f"token {token}"})
    assert lab.status_code == 200 and "JupyterLab" in lab.text
    env = server_env(hub, "cpu-user")
    assert env["NOTEBENCH_PROFILE"] == "cpu"
    assert env["CUDA_VISIBLE_DEVICES"] == ""  # a CPU server never sees a GPU
    assert env["MLFLOW_TRACKING_URI"] == f"{hub.url}/services/mlflow"
    assert env["MLFLOW_TRACKING_TOKEN"] == env["JUPYTERHUB_API_TOKEN"]
    assert env["NOTEBENCH_URL"] == hub.url  # `notebench jobs` in a terminal finds the hub
    hub.stop_server("cpu-user")
    assert requests.get(f"{hub.url}/user/cpu-user/api/status", headers={"Authorization": f"token {token}"}, allow_redirects=False).status_code != 200


def test_default_profile_is_cpu(hub):
    hub.new_user("default-user")
    hub.spawn("default-user")
    assert server_env(hub, "default-user")["NOTEBENCH_PROFILE"] == "cpu"
    hub.stop_server("default-user")


def test_unknown_profile_is_a_clear_400(hub):
    hub.new_user("typo-user")
    r = hub.spawn("typo-user", "gpu-large", wait=False)
    assert r.status_code == 400
    assert "unknown profile 'gpu-large'" in r.json()["message"]
    assert "cpu, gpu" in r.json()["message"]
    assert hub.server("typo-user") is None


def test_gpu_servers_get_their_own_gpus_and_exhaustion_says_so(hub):
    for name in ("gpu-a", "gpu-b", "gpu-c"):
        hub.new_user(name)
    hub.spawn("gpu-a", "gpu")
    hub.spawn("gpu-b", "gpu")
    got = {server_env(hub, n)["CUDA_VISIBLE_DEVICES"] for n in ("gpu-a", "gpu-b")}
    assert got == {"0", "1"}  # each its own GPU
    assert set(leases(hub).values()) == {"server:gpu-a/", "server:gpu-b/"}

    r = hub.spawn("gpu-c", "gpu", wait=False)
    assert r.status_code == 409
    assert "1 GPU(s) requested but only 0 of 2 are free" in r.json()["message"]
    assert hub.server("gpu-c") is None

    # Stopping a GPU server releases its lease; the waiting user gets that GPU.
    freed = server_env(hub, "gpu-a")["CUDA_VISIBLE_DEVICES"]
    hub.stop_server("gpu-a")
    assert "server:gpu-a/" not in leases(hub).values()
    hub.spawn("gpu-c", "gpu")
    assert server_env(hub, "gpu-c")["CUDA_VISIBLE_DEVICES"] == freed
    hub.stop_server("gpu-b")
    hub.stop_server("gpu-c")
    assert leases(hub) == {}


def test_crashed_gpu_server_releases_its_lease(hub):
    import os
    import signal

    hub.new_user("gpu-crash")
    hub.spawn("gpu-crash", "gpu")
    pid = server_pid(hub, "gpu-crash")
    assert "server:gpu-crash/" in leases(hub).values()
    os.killpg(pid, signal.SIGKILL)
    # The hub polls servers; when it notices the death it frees the lease.
    wait_for(lambda: "server:gpu-crash/" not in leases(hub).values(), 60, message="lease of crashed server freed")
    wait_for(lambda: hub.server("gpu-crash") is None, 60, message="hub notices the crash")


def test_spawn_form_offers_the_profiles_and_starts_the_chosen_one(hub):
    import re

    hub.signup("form-user", "form-user-password")
    hub.approve("form-user")
    browser = hub.browser_login("form-user", "form-user-password")
    form = browser.get(f"{hub.url}/hub/spawn")
    assert form.status_code == 200
    assert 'value="cpu"' in form.text and 'value="gpu"' in form.text and "1 NVIDIA GPU" in form.text
    xsrf = re.search(r'xsrf_token: "([^"]+)"', form.text).group(1)  # as the page's JS holds it
    r = browser.post(f"{hub.url}/hub/spawn", data={"_xsrf": xsrf, "profile": "gpu"}, allow_redirects=False)
    assert r.status_code == 302
    wait_for(lambda: (hub.server("form-user") or {}).get("ready"), 120, message="form-user's server ready")
    assert server_env(hub, "form-user")["NOTEBENCH_PROFILE"] == "gpu"
    hub.stop_server("form-user")


def test_jupyterlabs_extension_assets_are_cached_for_good_under_the_users_url(hub):
    """Their names are hashed: a browser keeps them instead of asking again on every visit."""
    token = hub.new_user("cache-user")
    hub.spawn("cache-user", "cpu", token=token)
    headers = {"Authorization": f"token {token}"}
    lab = requests.get(f"{hub.url}/user/cache-user/lab", headers=headers, timeout=60)
    page_config = lab_page_config(lab.text)
    assert page_config["federated_extensions"]
    for extension in page_config["federated_extensions"]:
        asset = requests.get(f"{hub.url}/user/cache-user/lab/extensions/{extension['name']}/{extension['load']}",
                             headers=headers, timeout=60)
        assert asset.status_code == 200
        assert "immutable" in asset.headers["Cache-Control"], (extension["name"], asset.headers["Cache-Control"])
    hub.stop_server("cache-user")
