"""``notebench token USER``: a new hub API token for a user, made in the data dir's hub database.

What ``jupyterhub token`` is for, without what else it does: JupyterHub's command first makes the
hub's roles match the configuration it loaded (its defaults, not Notebench's), which the database
refuses (``notebench.hub.config.keep_roles``). This one only adds the token, so it is safe with the
hub running or stopped. The token has its user's permissions, like one made on /hub/token.
"""

from __future__ import annotations

from pathlib import Path

from .cli import default_data_dir, fail


def add_token_command(sub) -> None:
    token = sub.add_parser("token", help="print a new hub API token for a user (instead of `jupyterhub token`)")
    token.add_argument("user", help="the hub user the token is for")
    token.add_argument("--data-dir", default=default_data_dir(), help="the data dir `notebench up` runs with")
    token.add_argument("--note", default="notebench token", help="a note shown with the token on /hub/token")
    token.set_defaults(func=cmd_token)


def cmd_token(args) -> int:
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
    return 0
