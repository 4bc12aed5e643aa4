"""Servers forked from the warm process (notebench.hub.server_zygote): each is its user's own
process, nothing of one user reaches another (memory, environment, files, tokens), and a forked
server is what a cold start makes (extensions, kernels, environment) — compared with a hub of
this module's own that starts servers cold. Culling, MLflow and the rest are tested on forked
servers everywhere else: forking is the default."""

import os
import pwd
import re
from pathlib import Path

import psutil
import pytest
import requests

from tests.support.kernels import execute, server_env, start_kernel
from tests.support.launcher import IS_ROOT, lab_page_config, running_hub, users_with_servers

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="per-user OS accounts need the hub to run as root (CI does)")

# Values that differ between any two servers (their user, token, port, kernel...), not their kind.
PER_SERVER = re.compile(r"^(JUPYTERHUB_(API_TOKEN|CLIENT_ID|USER|SERVICE_PREFIX|SERVICE_URL|OAUTH_CALLBACK_URL|"
                        r"OAUTH_ACCESS_SCOPES|OAUTH_CLIENT_ALLOWED_SCOPES|OAUTH_SCOPES|BASE_URL|HOST|API_URL|"
                        r"ACTIVITY_URL|PUBLIC_URL|PUBLIC_HUB_URL|SERVER_NAME|XSRF_COOKIE_NAME|COOKIE_HOST_PREFIX_ENABLED)|"
                        r"MLFLOW_TRACKING_(URI|TOKEN)|NOTEBENCH_URL|USER|HOME|JPY_.*|MLFLOW_.*|PWD)$")


@pytest.fixture(scope="module")
def two_users(hub):
    with users_with_servers(hub, "fork-a", "fork-b") as tokens:
        yield tokens


@pytest.fixture(scope="module")
def cold_hub(tmp_path_factory):
    with running_hub(tmp_path_factory, "cold", config="c.NotebenchSpawner.fork_servers = False\n") as cold:
        yield cold


def server_process(hub, name) -> psutil.Process:
    return psutil.Process(hub.api("GET", f"/users/{name}").json()["servers"][""]["state"]["pid"])


def memory_holds(pid: int, needle: bytes) -> bool:
    """Whether any readable memory of the process holds ``needle`` (read as root through /proc)."""
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            span, perms = line.split()[:2]
            if not perms.startswith("r") or line.rstrip().endswith(("[vvar]", "[vsyscall]", "[vvar_vclock]")):
                continue
            start, end = (int(x, 16) for x in span.split("-"))
            try:
                mem.seek(start)
                if needle in mem.read(end - start):
                    return True
            except (OSError, ValueError, OverflowError):
                continue
    return False


def test_servers_are_forks_of_one_warm_process(hub, two_users):
    a, b = (server_process(hub, name) for name in two_users)
    assert a.ppid() == b.ppid() and is_fork(a)
    # The warm process is the hub's, as root; each server its user's, in a session of its own.
    assert psutil.Process(a.ppid()).uids().real == 0
    for name, server in zip(two_users, (a, b)):
        account = pwd.getpwnam(f"nb-{name}")
        assert server.uids() == (account.pw_uid,) * 3
        assert server.gids() == (account.pw_gid,) * 3
        assert sorted(int(g) for g in open(f"/proc/{server.pid}/status").read().split("Groups:")[1].split("\n")[0].split()) \
            == sorted(os.getgrouplist(account.pw_name, account.pw_gid))
        assert server.cwd() == account.pw_dir
        assert os.getsid(server.pid) == server.pid


def test_a_users_token_is_in_no_other_memory(hub, two_users):
    a, b = (server_process(hub, name) for name in two_users)
    token_a = server_env(hub, "fork-a")["JUPYTERHUB_API_TOKEN"].encode()
    token_b = server_env(hub, "fork-b")["JUPYTERHUB_API_TOKEN"].encode()
    assert token_a != token_b
    assert memory_holds(a.pid, token_a)  # the search finds a token where it is
    assert not memory_holds(b.pid, token_a)
    assert not memory_holds(a.pid, token_b)
    # The warm process never read a request: no user's token is in it.
    assert not memory_holds(a.ppid(), token_a) and not memory_holds(a.ppid(), token_b)


def test_a_users_environment_and_files_are_their_own(hub, two_users):
    env_a, env_b = server_env(hub, "fork-a"), server_env(hub, "fork-b")
    assert (env_a["JUPYTERHUB_USER"], env_a["HOME"], env_a["USER"]) == ("fork-a", "/home/nb-fork-a", "nb-fork-a")
    assert env_b["JUPYTERHUB_USER"] == "fork-b"
    assert env_a["JUPYTERHUB_API_TOKEN"] not in env_b.values()
    # What the warm process was started with is not passed on (HOME of no directory, for one).
    assert not any("notebench-warm" in v for v in env_a.values())
    # B's code, in B's server, cannot read A's files.
    token_b = two_users["fork-b"]
    kernel = start_kernel(hub.url, "fork-b", token_b)
    printed = execute(hub.url, "fork-b", token_b, kernel,
                      "import os\ntry:\n    os.listdir('/home/nb-fork-a'); print('read')\n"
                      "except PermissionError:\n    print('denied', os.getuid())")
    assert printed.strip() == f"denied {pwd.getpwnam('nb-fork-b').pw_uid}"


def test_a_forked_server_is_what_a_cold_start_makes(hub, two_users, cold_hub):
    cold_token = cold_hub.new_user("fork-cold")
    cold_hub.spawn("fork-cold", "cpu")
    assert not is_fork(server_process(cold_hub, "fork-cold"))
    servers = {"forked": (hub, "fork-a", two_users["fork-a"]), "cold": (cold_hub, "fork-cold", cold_token)}

    def facts(h, name, token):
        headers = {"Authorization": f"token {token}"}
        get = lambda path: requests.get(f"{h.url}/user/{name}/{path}", headers=headers, timeout=60)  # noqa: E731
        lab = get("lab")
        assert lab.status_code == 200
        page_config = lab_page_config(lab.text)
        env = server_env(h, name)
        # JupyterLab saves a workspace and a setting where a cold start does: in the user's home.
        saved = [requests.put(f"{h.url}/user/{name}/lab/api/workspaces/fork-check", headers=headers, timeout=60,
                              json={"data": {}, "metadata": {"id": "fork-check"}}).status_code,
                 requests.put(f"{h.url}/user/{name}/lab/api/settings/@jupyterlab/apputils-extension:notification",
                              headers=headers, timeout=60, json={"raw": '{"fetchNews": "false"}'}).status_code]
        home = Path(pwd.getpwnam(f"nb-{name}").pw_dir)
        saved += sorted(str(p.relative_to(home)) for p in (home / ".jupyter" / "lab").rglob("*.json*")
                        if "fork-check" in p.name or "notification" in p.name)
        return {
            "lab extensions": sorted(e["name"] for e in page_config["federated_extensions"]),
            "disabled": page_config.get("disabledExtensions"),
            "kernelspecs": sorted(get("api/kernelspecs").json()["kernelspecs"]),
            # Handlers of the server extensions: Notebench's panel API, terminals, the lsp stand-in.
            "extension answers": [get(p).status_code for p in ("notebench/profiles", "api/terminals", "lsp/status")],
            "environment": sorted(k for k in env if not PER_SERVER.match(k)),
            "profile": (env["NOTEBENCH_PROFILE"], env["CUDA_VISIBLE_DEVICES"]),
            "saved": saved,
            "kernel runs": execute(h.url, name, token, start_kernel(h.url, name, token), "print(6 * 7)").strip(),
        }

    seen = {kind: facts(*server) for kind, server in servers.items()}
    assert seen["forked"]["lab extensions"], "the page config lists JupyterLab's extensions"
    assert "jupyterlab-notebench" in seen["forked"]["lab extensions"]
    assert seen["forked"] == seen["cold"]
    cold_hub.stop_server("fork-cold")


def is_fork(server: psutil.Process) -> bool:
    return "notebench.hub.server_zygote" in " ".join(psutil.Process(server.ppid()).cmdline())


def test_a_hung_or_killed_warm_process_delays_no_spawn_for_long(hub, two_users):
    token = hub.new_user("fork-gone")
    warm = psutil.Process(server_process(hub, "fork-a").ppid())
    # Hung: the spawn waits for it (30 s at most), then starts the server cold; the hub kills it.
    warm.suspend()
    try:
        assert hub.spawn("fork-gone", "cpu", token=token).status_code in (201, 202)
        server = server_process(hub, "fork-gone")
        assert not is_fork(server)
        assert requests.get(f"{hub.url}/user/fork-gone/api/status", headers={"Authorization": f"token {token}"},
                            timeout=60).status_code == 200
    finally:
        if warm.is_running():
            warm.resume()
    psutil.wait_procs([warm], timeout=60)
    assert not warm.is_running()
    hub.stop_server("fork-gone")
    # The next spawn is forked again, by a new warm process.
    hub.spawn("fork-gone", "cpu", token=token)
    server = server_process(hub, "fork-gone")
    assert is_fork(server) and server.ppid() != warm.pid
    # The servers the old one forked live on, as servers do when the hub restarts.
    assert requests.get(f"{hub.url}/user/fork-a/api/status",
                        headers={"Authorization": f"token {two_users['fork-a']}"}, timeout=60).status_code == 200
    hub.stop_server("fork-gone")
