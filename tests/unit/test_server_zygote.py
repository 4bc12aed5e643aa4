"""The warm server process's checks of what a fork could get wrong (notebench.hub.server_zygote):
which environment variables make a spawn start cold, and the user's site-packages."""

import site
import sys

import pytest

from notebench.hub import server_zygote
from notebench.hub.server_zygote import startup_env


def test_only_what_a_process_reads_at_start_counts():
    env = {"PYTHONPATH": "/x", "LANG": "C.UTF-8", "LC_ALL": "C", "JUPYTERHUB_SINGLEUSER_APP": "extension",
           "HOME": "/home/a", "JUPYTERHUB_API_TOKEN": "secret", "PATH": "/bin", "MLFLOW_TRACKING_URI": "http://x"}
    assert startup_env(env) == {"PYTHONPATH": "/x", "LANG": "C.UTF-8", "LC_ALL": "C", "JUPYTERHUB_SINGLEUSER_APP": "extension"}


@pytest.fixture
def user_site(tmp_path, monkeypatch):
    monkeypatch.setattr(site, "ENABLE_USER_SITE", True)
    monkeypatch.setattr(site, "USER_BASE", None)
    monkeypatch.setattr(site, "USER_SITE", None)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("PYTHONUSERBASE", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    path = tmp_path / ".local" / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    path.mkdir(parents=True)
    return path


def test_a_user_package_beside_the_imported_ones_is_put_on_the_path_before_the_environments(user_site):
    (user_site / "myhelpers").mkdir()
    (user_site / "myhelpers-1.0.dist-info").mkdir()
    assert server_zygote._user_site_conflicts() is False
    first_site = next(p for p in sys.path if p.endswith("site-packages"))
    assert first_site == str(user_site)


@pytest.mark.parametrize("entry", ["tornado", "jupyter_server", "startup.pth"])
def test_what_could_change_the_warm_process_starts_the_server_cold(user_site, entry, monkeypatch):
    for imported in ("tornado", "jupyter_server"):  # as in the warm process
        monkeypatch.setitem(sys.modules, imported, sys.modules.get(imported) or object())
    target = user_site / entry
    if entry.endswith(".pth"):
        target.write_text("import os\n")
    else:
        target.mkdir(parents=True, exist_ok=True)
    before = list(sys.path)
    assert server_zygote._user_site_conflicts() is True
    assert sys.path == before


def test_without_a_user_site_nothing_changes(monkeypatch):
    monkeypatch.setattr(site, "ENABLE_USER_SITE", False)  # as in a virtual environment
    before = list(sys.path)
    assert server_zygote._user_site_conflicts() is False
    assert sys.path == before


def become_in_a_child(request: dict, started_env: dict) -> dict:
    """Run server_zygote._become in a forked child (it changes the process) and return what it saw."""
    import json
    import os

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            cold = server_zygote._become(request, started_env)
            seen = {"cold": cold, "cwd": os.getcwd(), "env": dict(os.environ), "sid": os.getsid(0) == os.getpid()}
            os.write(write, json.dumps(seen).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        out = f.read()
    os.waitpid(pid, 0)
    return json.loads(out)


def test_a_child_takes_the_spawns_session_cgroup_home_and_environment(tmp_path):
    group, home = tmp_path / "cgroup", tmp_path / "home"
    group.mkdir()
    home.mkdir()
    env = {"HOME": str(home), "JUPYTERHUB_API_TOKEN": "t", "LANG": "C.UTF-8"}
    seen = become_in_a_child({"cgroup": str(group), "os_user": None, "home": str(home), "env": env},
                             startup_env(env))
    assert seen == {"cold": False, "cwd": str(home), "env": env, "sid": True}
    assert (group / "cgroup.procs").read_text().isdigit()  # the child wrote its pid: it entered the group


def test_a_spawn_with_other_interpreter_settings_starts_cold(tmp_path):
    env = {"HOME": str(tmp_path), "PYTHONPATH": "/elsewhere"}
    seen = become_in_a_child({"cgroup": None, "os_user": None, "home": str(tmp_path), "env": env}, {})
    assert seen["cold"] is True


def test_what_imports_made_of_the_warm_home_and_user_becomes_the_users(monkeypatch):
    from traitlets import HasTraits, List, Unicode

    class Settings(HasTraits):
        folder = Unicode(f"{server_zygote.WARM_HOME}/.jupyter/lab")
        who = Unicode(server_zygote.WARM_USER)
        paths = List([f"{server_zygote.WARM_HOME}/a", 3])

    module = type(sys)("made_at_import_example")
    module.CACHE = f"{server_zygote.WARM_HOME}/.cache"
    module.PAIR = (f"{server_zygote.WARM_HOME}/x", None)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    found = server_zygote.made_at_import()
    server_zygote._make_users(found, "/home/nb-ada", "nb-ada")
    made = Settings()
    assert (made.folder, made.who, made.paths) == ("/home/nb-ada/.jupyter/lab", "nb-ada", ["/home/nb-ada/a", 3])
    assert (module.CACHE, module.PAIR) == ("/home/nb-ada/.cache", ("/home/nb-ada/x", None))


def test_a_child_that_must_start_cold_execs_the_requests_command_as_the_same_process(tmp_path):
    import json
    import os
    import socket

    hub_end, child_end = socket.socketpair()
    _control_hub, control_child = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        server_zygote._child(child_end.fileno(), control_child, {}, [])  # never returns
    child_end.close()
    answers = hub_end.makefile("rb")
    assert json.loads(answers.readline()) == {"pid": pid}
    written = tmp_path / "pid"
    request = {"cmd": [sys.executable, "-c", "import os, sys; open(sys.argv[1], 'w').write(str(os.getpid()))"],
               "args": [str(written)], "env": {"HOME": str(tmp_path), "PYTHONPATH": str(tmp_path)},
               "os_user": None, "home": str(tmp_path), "cgroup": None}
    hub_end.sendall(json.dumps(request).encode() + b"\n")
    assert json.loads(answers.readline()) == {"started": "cold"}  # PYTHONPATH differs from the warm process's
    assert os.waitpid(pid, 0)[1] == 0
    assert written.read_text() == str(pid)
