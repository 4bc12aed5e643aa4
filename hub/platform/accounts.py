"""Who a JupyterHub user is on this machine: their OS account, their home, how to run as them.

One place for the spawner (servers) and the executor (jobs), so a user's jobs see the same
files, as the same account, as their server. Like The Littlest JupyterHub: when running as root
every user gets an account ``nb-<name>`` with a 0700 home; otherwise everything runs as the
current account (no isolation) with homes under the data dir (``<homes>/<name>``: hub names are
distinct, never contain '/' and are never '.' or '..', so that mapping is one-to-one too).

Names are identities: two hub users never share an account. An account records whose it is in
its comment (GECOS) field, ``notebench=<sha256 of the hub name>``, so the hub and the executor
(separate processes that share only the machine) agree without another store, and an account
that is someone else's is refused (``AccountClash``), never shared. Accounts made before they
were tagged are adopted by the hub user they were made for.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pwd
import re
import stat
import subprocess
import sys
import tempfile

from jupyterhub.spawner import set_user_setuid
from traitlets import Bool, Unicode, default
from traitlets.config import Configurable

_OS_NAME_OK = re.compile(r"^[a-z_][a-z0-9_-]*$")
_HASHED = re.compile(r"-[0-9a-f]{8}$")  # how every hashed account name ends
TAG = "notebench="  # no ':' (it separates passwd fields) and no ',' (it separates the comment's)
# Held while an account is made or adopted, by every process that makes them (hub, executor).
# In a directory only root writes to: a user holding it would stop all account making.
LOCK_FILE = "/run/notebench-accounts.lock"


def _own_directory(path: str, mode: int, uid: int, gid: int) -> None:
    """``path`` a directory (never a link) of ``uid``:``gid`` with ``mode``, made if missing. As
    root it is taken back from whoever made it; otherwise one that is not ours is refused."""
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise RuntimeError(f"{path} is not a directory (a link, or a file): refused as a runtime directory")
    if (info.st_uid, info.st_gid) != (uid, gid):
        if os.geteuid() != 0:
            raise RuntimeError(f"{path} belongs to uid {info.st_uid}, not {uid}: refused as a runtime directory")
        os.lchown(path, uid, gid)
    os.chmod(path, mode, follow_symlinks=False)


class AccountClash(Exception):
    """The OS account a hub user maps to exists and is not theirs: refused, never shared."""


def os_username(prefix: str, name: str, legacy: bool = False) -> str:
    """A valid Linux account name for JupyterHub user ``name`` (at most 32 chars with the default prefix).

    A name that is valid as it is stays as it is, unless it ends like a hashed one (``-<8 hex>``):
    then it is hashed too, so that no user's plain name is another user's hashed name.
    ``legacy``: the name Notebench gave before it did that (accounts made then keep their names).
    """
    candidate = prefix + name
    if _OS_NAME_OK.match(candidate) and len(candidate) <= 32 and (legacy or not _HASHED.search(candidate)):
        return candidate
    # E.g. 'ada.lovelace@example.org' becomes 'nb-ada-lovelace-examp-7799473f'.
    slug = re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-")[:18]
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{prefix}{slug}-{digest}"


def owner_tag(name: str) -> str:
    """What an account's comment field holds when it is hub user ``name``'s (hashed: any name fits)."""
    return TAG + hashlib.sha256(name.encode()).hexdigest()


def _getpwnam(account: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(account)
    except KeyError:
        return None


def _owner(entry: pwd.struct_passwd) -> str:
    """The comment's first field, where the tag is (``chfn`` lets a user change the others)."""
    return entry.pw_gecos.split(",")[0]


@contextlib.contextmanager
def _accounts_lock():
    """One maker of accounts at a time on this machine: two users never adopt one account at once."""
    os.makedirs(os.path.dirname(LOCK_FILE), exist_ok=True)
    with open(LOCK_FILE, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released when the file is closed
        yield


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
    runtime_root = Unicode(
        help="Where users' Jupyter runtime directories are made (their servers' kernels listen on unix sockets "
        "there). Short: a socket's path is at most 107 bytes. Default /run/notebench-runtime (one 0700 "
        "directory per account) when isolating users, else a 0700 directory in the temporary directory."
    ).tag(config=True)

    @default("runtime_root")
    def _runtime_root_default(self):
        if self.isolate_users:
            return "/run/notebench-runtime"
        return os.path.join(tempfile.gettempdir(), f"notebench-runtime-{os.getuid()}")

    def _find(self, name: str) -> tuple[str, pwd.struct_passwd | None]:
        """Hub user ``name``'s account and its passwd entry (None: not made yet), or AccountClash.

        Theirs is the one tagged with their name; else an untagged one that Notebench made for
        them before accounts were tagged (adopted by ``prepare``); else a new one.
        """
        tag = owner_tag(name)
        new = os_username(self.system_user_prefix, name)
        old = os_username(self.system_user_prefix, name, legacy=True)
        entries = {account: _getpwnam(account) for account in dict.fromkeys((new, old))}
        for account, entry in entries.items():
            if entry is not None and _owner(entry) == tag:
                return account, entry
        entry = entries[old]
        # Old Notebench made its accounts with an empty comment and the home below: nothing
        # else (a system account, one an admin made) is taken over.
        if entry is not None and not _owner(entry) and entry.pw_dir == os.path.join(self.system_home_root, old):
            return old, entry
        entry = entries[new]
        if entry is None:
            return new, None
        whose = "another hub user's" if _owner(entry).startswith(TAG) else "not one Notebench made for this user"
        raise AccountClash(
            f"hub user {name!r} maps to the OS account {new!r}, which is {whose}: refused rather than shared "
            "(an admin can rename the hub user, or that account)"
        )

    def os_user(self, name: str) -> str:
        if self.isolate_users:
            return self._find(name)[0]
        return pwd.getpwuid(os.getuid()).pw_name

    def home(self, name: str) -> str:
        if self.isolate_users:
            return os.path.join(self.system_home_root, self.os_user(name))
        return os.path.join(self.shared_homes_dir, name)

    def prepare(self, name: str) -> None:
        """Make sure the account (tagged as ``name``'s) and its private home exist."""
        if not self.isolate_users:
            os.makedirs(self.home(name), mode=0o700, exist_ok=True)
            return
        tag = owner_tag(name)
        with _accounts_lock():
            account, entry = self._find(name)
            if entry is None:
                home = os.path.join(self.system_home_root, account)
                cmd = ["useradd", "--create-home", "--home-dir", home, "--shell", "/bin/bash", "--user-group"]
                subprocess.run([*cmd, "--comment", tag, account], check=True, capture_output=True)
            elif _owner(entry) != tag:  # made by older Notebench for this user: theirs from now on
                subprocess.run(["usermod", "--comment", tag, account], check=True, capture_output=True)
        entry = pwd.getpwnam(account)
        os.makedirs(entry.pw_dir, exist_ok=True)
        os.chown(entry.pw_dir, entry.pw_uid, entry.pw_gid)
        os.chmod(entry.pw_dir, 0o700)

    def runtime_dir(self, name: str) -> str:
        """The Jupyter runtime directory of ``name``'s server (JUPYTER_RUNTIME_DIR)."""
        if self.isolate_users:
            return os.path.join(self.runtime_root, str(self.uid_gid(name)[0]))
        return self.runtime_root

    def prepare_runtime_dir(self, name: str) -> str:
        """Make ``name``'s runtime directory theirs alone (0700), and return it."""
        path = self.runtime_dir(name)
        if self.isolate_users:
            _own_directory(self.runtime_root, 0o755, 0, 0)
            _own_directory(path, 0o700, *self.uid_gid(name))
        else:
            _own_directory(path, 0o700, os.getuid(), os.getgid())
        return path

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
