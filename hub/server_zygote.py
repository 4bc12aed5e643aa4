"""The warm server process: jupyterhub-singleuser imported once, forked for every local spawn.

A cold start of a user server spends most of its time importing jupyter_server, JupyterLab and
their extensions (bench/README.md, spawn section). This process, started by the hub
(``notebench.hub.server_forker``), imports them once and then waits. For each spawn the hub
sends it one end of a new socket pair (and nothing else); it forks at once, and only the child
reads the spawn's request from that socket: the user's environment and tokens never enter this
process, so no later child can find them in memory it inherited.

The child then does what a cold start's preexec does, in the same order: a session of its own,
the profile's cgroup (as root), the user's uid, groups and home (jupyterhub's set_user_setuid),
then the spawn's environment in place of this one. It replies with its pid, closes every file
descriptor it inherited, and runs jupyterhub-singleuser's main as that user: a fresh process
that shares only the pages of imported code with its siblings (copy-on-write).

Where a fork could differ from a cold start, the child becomes a cold start instead (exec of
the same command, same pid): the spawn's interpreter settings (PYTHON*, locale, the singleuser
app switches) differ from this process's, or the user has packages in their user site that
this process imported already, or ``.pth`` files there.

What forked servers share, unlike cold ones: the address-space layout of the pre-imported code
and Python's hash seed (set at interpreter start). /proc/<pid>/environ and cmdline show this
process's start, not the spawn's (Linux keeps the original areas; os.environ is the spawn's).
``c.NotebenchSpawner.fork_servers = False`` turns forking off.

    python -m notebench.hub.server_zygote CONTROL_FD
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import signal
import site
import socket
import sys
import tempfile
import time
from pathlib import Path

# What jupyterhub-singleuser imports on its way to serving (its extensions included); a module
# that is not installed is skipped.
PRELOAD = (
    "jupyterhub.singleuser",
    "jupyterhub.singleuser.extension",
    "jupyter_server.serverapp",
    "jupyter_server.services.kernels.websocket",
    "jupyter_server.services.kernels.connection.channels",
    "jupyter_server.services.contents.largefilemanager",
    "jupyter_server.gateway.managers",
    "jupyterlab",
    "jupyterlab.labapp",
    "jupyterlab_server",
    "jupyter_server_terminals",
    "notebook_shim",
    "jupyterlab_notebench",
    "notebench.hub.singleuser",
    "jupyter_client.provisioning.local_provisioner",
    "jupyter_client.ioloop",
    "nbformat",
    "terminado",
)

# Environment variables read once at interpreter start or import time: a spawn whose values
# differ is started cold.
STARTUP_EXACT = {"LANG", "JUPYTERHUB_SINGLEUSER_APP", "JUPYTERHUB_SINGLEUSER_EXTENSION", "TORNADO_EXTENSION",
                 "TORNADO_NO_EXTENSION"}
STARTUP_PREFIXES = ("PYTHON", "LC_")
MAX_REQUEST_BYTES = 4 * 1024 * 1024
# The warm process's HOME and USER: names of no directory and no account, so that a value an
# import computed from them (JupyterLab's settings and workspaces directories are trait defaults
# made at import) can be found afterwards and made the user's in each child.
WARM_HOME = "/nonexistent/notebench-warm-home"
WARM_USER = "notebench-warm-user"


def startup_env(env: dict) -> dict:
    """The part of an environment that a process reads when it starts."""
    return {k: v for k, v in env.items() if k in STARTUP_EXACT or k.startswith(STARTUP_PREFIXES)}


def preload() -> None:
    from notebench.hub import server_command

    server_command.prepare()
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def made_at_import() -> list[tuple[object, str, object]]:
    """(holder, name, value) of module globals and traitlets defaults that hold WARM_HOME or
    WARM_USER: strings, or lists/tuples of strings."""
    from traitlets import HasTraits, TraitType

    def holds(value) -> bool:
        if isinstance(value, str):
            return WARM_HOME in value or WARM_USER in value
        return type(value) in (list, tuple) and any(isinstance(v, str) and holds(v) for v in value)

    found: list[tuple[object, str, object]] = []
    for module in list(sys.modules.values()):
        names = getattr(module, "__dict__", {})
        if names is globals():  # this module's own marks stay what they are
            continue
        found += [(names, name, value) for name, value in list(names.items()) if holds(value)]
    classes, seen = [HasTraits], set()
    while classes:
        cls = classes.pop()
        classes += cls.__subclasses__()
        for trait in cls.__dict__.values():
            if not isinstance(trait, TraitType) or id(trait) in seen:
                continue
            seen.add(id(trait))
            # A container trait (List, Tuple...) makes its default from default_args.
            for attribute in ("default_value", "default_args"):
                value = getattr(trait, attribute, None)
                if holds(value) or (type(value) is tuple and any(holds(v) for v in value)):
                    found.append((trait, attribute, value))
        # traitlets copies immutable defaults into each class at its creation, too.
        copies = cls.__dict__.get("_static_immutable_initial_values") or {}
        found += [(copies, key, default) for key, default in copies.items() if holds(default)]
    return found


def _make_users(found: list[tuple[object, str, object]], home: str, user: str) -> None:
    warm_home, warm_user = WARM_HOME, WARM_USER  # read once: the loop may be replacing them too

    def mine(value):
        if isinstance(value, str):
            return value.replace(warm_home, home).replace(warm_user, user)
        if type(value) in (list, tuple):
            return type(value)(mine(v) for v in value)
        return value

    for holder, name, value in found:
        if isinstance(holder, dict):
            holder[name] = mine(value)
        else:
            setattr(holder, name, mine(value))


def serve(control: socket.socket) -> None:
    """Fork a child for every socket the hub sends; exit when the hub closes its end."""
    signal.signal(signal.SIGCHLD, _reap)
    started_env = startup_env(dict(os.environ))
    found = made_at_import()
    gc.freeze()  # imported objects stay out of the collector's way: fewer pages copied per child
    while True:
        message, fds, _flags, _address = socket.recv_fds(control, 1, 1)
        if not message:
            return
        for fd in fds:
            pid = os.fork()
            if pid == 0:
                _child(fd, control, started_env, found)  # never returns
            os.close(fd)


def _reap(_signum, _frame) -> None:
    """Collect exited servers at once: the hub polls them by pid (a zombie would look alive)."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


def _child(fd: int, control: socket.socket, started_env: dict, found: list) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    control.close()
    conn = socket.socket(fileno=fd)
    try:
        # The pid first: the hub writes its request only to a child that answers in time (a child
        # forked late, after the hub gave up on it, reads nothing and ends).
        _reply(conn, {"pid": os.getpid()})
        request = _read_request(conn)
        cold = _become(request, started_env)
        _make_users(found, os.environ.get("HOME", ""), os.environ.get("USER", ""))
        _reply(conn, {"started": "cold" if cold else "forked"})
    except BaseException as e:  # noqa: BLE001  (whatever it is, the hub hears it and the child ends)
        try:
            _reply(conn, {"error": f"{type(e).__name__}: {e}"})
        finally:
            os._exit(1)
    conn.close()
    os.closerange(3, os.sysconf("SC_OPEN_MAX") if os.sysconf("SC_OPEN_MAX") > 0 else 65536)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    args = request["args"]
    if cold:
        cmd = request["cmd"]
        os.execve(cmd[0], [*cmd, *args], dict(os.environ))
    from notebench.hub import server_command

    sys.argv = ["jupyterhub-singleuser", *args]
    code: object
    try:
        code = server_command.main()
    except SystemExit as e:
        code = e.code
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else (0 if code is None else 1))


def _read_request(conn: socket.socket) -> dict:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            raise EOFError("the hub closed the socket before its request ended")
        data += chunk
        if len(data) > MAX_REQUEST_BYTES:
            raise ValueError("the spawn request is too large")
    return json.loads(data)


def _reply(conn: socket.socket, message: dict) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


def _become(request: dict, started_env: dict) -> bool:
    """The spawn's session, cgroup, account, home and environment, as a cold start's preexec makes
    them. Returns whether the server must start cold (see the module docstring)."""
    os.setsid()
    if request.get("cgroup"):
        from notebench.hub.platform.cgroups import CgroupLimits

        CgroupLimits.enter(Path(request["cgroup"]))
    if request.get("os_user"):
        from jupyterhub.spawner import set_user_setuid

        set_user_setuid(request["os_user"])()
    else:
        os.chdir(request["home"])
    env = request["env"]
    os.environ.clear()
    os.environ.update(env)
    time.tzset()
    tempfile.tempdir = None  # found again from this environment's TMPDIR
    if startup_env(env) != started_env:
        return True
    return _user_site_conflicts()


def _user_site_conflicts() -> bool:
    """Put the user's site-packages on sys.path where a cold start would; True if what is there
    could change this process (a .pth file, or a package this process imported already)."""
    if not site.ENABLE_USER_SITE:
        return False
    site.USER_BASE = site.USER_SITE = None  # found again from the user's HOME
    path = site.getusersitepackages()
    try:
        names = os.listdir(path)
    except OSError:
        return False
    if any(n.endswith(".pth") for n in names):
        return True
    imported = {m.partition(".")[0] for m in sys.modules}
    packages = {n.partition(".")[0].partition("-")[0] for n in names if not n.endswith((".dist-info", ".egg-info"))}
    if packages & imported:
        return True
    first_site = next((i for i, p in enumerate(sys.path) if p.endswith("site-packages")), len(sys.path))
    sys.path.insert(first_site, path)
    return False


def main() -> int:
    control = socket.socket(fileno=int(sys.argv[1]))
    preload()
    serve(control)
    return 0


if __name__ == "__main__":
    sys.exit(main())
