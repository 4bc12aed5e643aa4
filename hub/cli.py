"""The ``notebench`` command line."""

from __future__ import annotations

import argparse
import getpass
import os
import secrets
import socket
import sys
from pathlib import Path
from typing import NoReturn

from notebench.hub import supervisor

HERE = Path(__file__).parent


def default_data_dir() -> str:
    xdg = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.environ.get("NOTEBENCH_DATA_DIR") or os.path.join(xdg, "notebench")


def fail(message: str) -> NoReturn:
    print(f"notebench: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def port_taken(ip: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip, port))
        except OSError:
            return True
    return False


def admin_password_for_first_start(data_dir: Path) -> tuple[str | None, bool]:
    """(password to hand the hub, whether it was generated now and must be shown once)."""
    if os.environ.get("NOTEBENCH_ADMIN_PASSWORD"):
        return os.environ["NOTEBENCH_ADMIN_PASSWORD"], False
    marker = data_dir / "admin_password_set"
    if marker.exists():
        return None, False
    marker.touch(mode=0o600)
    return secrets.token_urlsafe(12), True


def cmd_up(args) -> int:
    data_dir = Path(args.data_dir).expanduser().resolve()
    if args.config and not Path(args.config).is_file():
        fail(f"--config {args.config}: no such file")
    if not 0 < args.port < 65536:
        fail(f"--port {args.port}: must be between 1 and 65535")
    data_dir.mkdir(parents=True, exist_ok=True)
    # Everything the hub and its services create is private (umask 077); the data dir itself may
    # only be traversed, so job runners (as their users) reach their own job directory.
    os.umask(0o077)
    os.chmod(data_dir, 0o711)
    try:
        lock = supervisor.lock_data_dir(data_dir)  # noqa: F841 (held until this process exits)
    except supervisor.DataDirInUse as e:
        holder = f" (pid {e.args[0]})" if e.args[0] else ""
        fail(f"the data dir {data_dir} is in use by another 'notebench up'{holder}; "
             "stop it first, or use another --data-dir")
    # After a kill -9 (of the hub, of `notebench up`, of both): what the last hub left running.
    supervisor.stop_leftovers(data_dir)
    if port_taken(args.ip, args.port):
        fail(f"port {args.port} on {args.ip} is already in use (is Notebench already running? try --port)")
    if os.geteuid() != 0:
        print(
            "\n*** WARNING: Notebench is not running as root: every user's server runs as "
            f"{os.environ.get('USER', 'this account')}, with NO isolation between users. "
            "Start it as root for per-user OS accounts. ***\n",
            file=sys.stderr,
        )
    password, generated = admin_password_for_first_start(data_dir)
    env = dict(os.environ, NOTEBENCH_DATA_DIR=str(data_dir), NOTEBENCH_PORT=str(args.port), NOTEBENCH_IP=args.ip)
    if password:
        env["NOTEBENCH_ADMIN_PASSWORD"] = password
    if args.config:
        env["NOTEBENCH_USER_CONFIG"] = str(Path(args.config).resolve())
    cmd = [sys.executable, "-m", "jupyterhub", "-f", str(HERE / "jupyterhub_config.py")]
    host = "127.0.0.1" if args.ip in ("0.0.0.0", "") else args.ip
    url = f"http://{host}:{args.port}"

    def announce():
        lines = [f"Notebench is running at {url}/", f"  data dir: {data_dir}"]
        if generated:
            lines.append(f"  log in as 'admin' with password: {password}  (shown once; set NOTEBENCH_ADMIN_PASSWORD to change it)")
        elif password:
            lines.append("  log in as 'admin' with the password in NOTEBENCH_ADMIN_PASSWORD")
        else:
            lines.append("  log in as 'admin' with the password shown at the first start")
        lines.append(f"  others sign up at {url}/hub/signup and the admin approves them at {url}/hub/authorize")
        if os.environ.get("NOTEBENCH_ADMIN_TOKEN"):
            lines.append("  API: NOTEBENCH_ADMIN_TOKEN is an admin API token (Authorization: token ...)")
        print("\n".join(lines), flush=True)

    return supervisor.supervise(cmd, env, data_dir, f"{url}/hub/health", announce)


def cmd_hub(args) -> int:
    """JupyterHub with Notebench's config, in the foreground (the hub pod's command: the config
    comes from NOTEBENCH_MODE=kubernetes, NOTEBENCH_VALUES and the chart's env)."""
    os.execv(sys.executable, [sys.executable, "-m", "jupyterhub", "-f", str(HERE / "jupyterhub_config.py")])


def add_token_command(sub) -> None:
    token = sub.add_parser("token", help="print a new hub API token for a user (instead of `jupyterhub token`)")
    token.add_argument("user", help="the hub user the token is for")
    token.add_argument("--data-dir", default=default_data_dir(), help="the data dir `notebench up` runs with")
    token.add_argument("--note", default="notebench token", help="a note shown with the token on /hub/token")
    token.set_defaults(func=cmd_token)


def cmd_token(args) -> int:
    """``notebench token USER``: a new hub API token for a user, made in the data dir's hub database.

    What ``jupyterhub token`` is for, without what else it does: JupyterHub's command first makes the
    hub's roles match the configuration it loaded (its defaults, not Notebench's), which the database
    refuses (``notebench.hub.config.keep_roles``). This one only adds the token, so it is safe with the
    hub running or stopped. The token has its user's permissions, like one made on /hub/token.
    """
    from jupyterhub import orm

    db_file = Path(args.data_dir).expanduser().resolve() / "jupyterhub.sqlite"
    if not db_file.is_file():
        fail(f"no hub database at {db_file}: give the data dir of a Notebench that has started (--data-dir)")
    try:
        db = orm.new_session_factory(f"sqlite:///{db_file}")()
    except orm.DatabaseSchemaMismatch as e:
        fail(str(e))
    user = orm.User.find(db, args.user)
    if user is None:
        fail(f"no user {args.user!r} in this hub (users sign up, or an admin creates them: POST /hub/api/users/NAME)")
    print(user.new_api_token(note=args.note))
    # For the audit log: the hub's outbox sends it (notebench.hub.audit).
    from notebench.hub.audit import OUTBOX_FILE
    from notebench.hub.platform.audit_outbox import AuditOutbox

    AuditOutbox(db_file.parent / OUTBOX_FILE, url="", token="").add(
        f"notebench-cli:{getpass.getuser()}", "token.create", f"tokens of {user.name}", user.name, note=args.note
    )
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="notebench", description="Notebench: a data-science workbench on JupyterHub")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start Notebench on this machine")
    up.add_argument("--port", type=int, default=8000, help="the one public port (default 8000)")
    up.add_argument("--ip", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    up.add_argument("--data-dir", default=default_data_dir(), help="where all state lives")
    up.add_argument("--config", help="a traitlets config file (e.g. profiles, OAuth) applied on top of the defaults")
    up.set_defaults(func=cmd_up)
    hub = sub.add_parser("hub", help="run JupyterHub with Notebench's configuration (the Helm chart's hub pod)")
    hub.set_defaults(func=cmd_hub)
    from notebench.executor.cli import add_admin_commands, add_jobs_commands  # the executor's own commands

    add_jobs_commands(sub)
    add_admin_commands(sub)
    add_token_command(sub)  # `notebench token`, instead of `jupyterhub token`
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
