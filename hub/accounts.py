"""Who a JupyterHub user is on this machine: their OS account, their home, how to run as them.

One place for the spawner (servers) and the executor (jobs), so a user's jobs see the same
files, as the same account, as their server. Like The Littlest JupyterHub: when running as root
every user gets an account ``nb-<name>`` with a 0700 home; otherwise everything runs as the
current account (no isolation) with homes under the data dir.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import subprocess
import sys

from jupyterhub.spawner import set_user_setuid
from traitlets import Bool, Unicode, default
from traitlets.config import Configurable

_OS_NAME_OK = re.compile(r"^[a-z_][a-z0-9_-]*$")


def os_username(prefix: str, name: str) -> str:
    """A valid, stable Linux account name for JupyterHub user ``name`` (at most 32 chars)."""
    candidate = prefix + name.lower()
    if _OS_NAME_OK.match(candidate) and len(candidate) <= 32 and name == name.lower():
        return candidate
    # Usernames like 'Ada.Lovelace@example.org' become 'nb-ada-lovelace-example-1a2b3c4d'.
    slug = re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-")[:18]
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{prefix}{slug}-{digest}"


def ensure_os_user(username: str, home_root: str) -> pwd.struct_passwd:
    """Create the OS account (and its 0700 home) if missing; return its passwd entry."""
    try:
        entry = pwd.getpwnam(username)
    except KeyError:
        home = os.path.join(home_root, username)
        subprocess.run(
            ["useradd", "--create-home", "--home-dir", home, "--shell", "/bin/bash", "--user-group", username],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(username)
    os.makedirs(entry.pw_dir, exist_ok=True)
    os.chown(entry.pw_dir, entry.pw_uid, entry.pw_gid)
    os.chmod(entry.pw_dir, 0o700)
    return entry


class UserAccounts(Configurable):
    """OS accounts and homes of hub users (``c.UserAccounts``)."""

    isolate_users = Bool(
        help="Run each user's server and jobs as their own OS account (default: when running as root)."
    ).tag(config=True)

    @default("isolate_users")
    def _isolate_default(self):
        return os.geteuid() == 0

    system_user_prefix = Unicode("nb-", help="Prefix of the OS accounts made for users.").tag(config=True)
    system_home_root = Unicode("/home", help="Where OS accounts' homes are made when isolating users.").tag(
        config=True
    )
    shared_homes_dir = Unicode(help="Where users' homes live when not isolating users.").tag(config=True)

    def os_user(self, name: str) -> str:
        if self.isolate_users:
            return os_username(self.system_user_prefix, name)
        return pwd.getpwuid(os.getuid()).pw_name

    def home(self, name: str) -> str:
        if self.isolate_users:
            return os.path.join(self.system_home_root, self.os_user(name))
        return os.path.join(self.shared_homes_dir, name)

    def prepare(self, name: str) -> None:
        """Make sure the account and its private home exist."""
        if self.isolate_users:
            ensure_os_user(self.os_user(name), self.system_home_root)
        else:
            os.makedirs(self.home(name), mode=0o700, exist_ok=True)

    def uid_gid(self, name: str) -> tuple[int, int]:
        entry = pwd.getpwnam(self.os_user(name))
        return entry.pw_uid, entry.pw_gid

    def env(self, name: str) -> dict:
        """USER, HOME, SHELL and a PATH with this environment's tools (nothing the user cannot read)."""
        return {
            "USER": self.os_user(name),
            "HOME": self.home(name),
            "SHELL": "/bin/bash",
            "PATH": os.pathsep.join([os.path.join(sys.prefix, "bin"), "/usr/local/bin", "/usr/bin", "/bin"]),
        }

    def preexec(self, name: str, before=None):
        """A Popen preexec_fn that runs ``before()`` (as root), then becomes the user, in their home."""
        setuid = set_user_setuid(self.os_user(name)) if self.isolate_users else None
        home = self.home(name)

        def preexec():
            if before is not None:
                before()
            if setuid is not None:
                setuid()
            else:
                os.chdir(home)

        return preexec
