"""Hub user -> OS account: one account per hub name, kept across restarts and upgrades, never shared.

The unit tests make real accounts (useradd, as root) with a prefix of their own and homes in a
temporary directory, and remove them at the end; the end-to-end ones use the session's hub.
"""

import os
import pwd
import secrets
import subprocess

import pytest

from notebench.hub.platform.accounts import AccountClash, UserAccounts, os_username, owner_tag
from tests.support.launcher import IS_ROOT, notebook

ADA = "ada.lovelace@example.org"
LOOK_ALIKE = "ada-lovelace-examp-7799473f"  # what older Notebench made of ADA's name (issue 13, item 4)

root_only = pytest.mark.skipif(not IS_ROOT, reason="making OS accounts needs root (CI runs as root)")


def old_useradd(account: str, home_root) -> None:
    """An account as Notebench made it before accounts were tagged."""
    home = os.path.join(home_root, account)
    cmd = ["useradd", "--create-home", "--home-dir", home, "--shell", "/bin/bash", "--user-group", account]
    subprocess.run(cmd, check=True, capture_output=True)


def tagged_useradd(account: str, home_root, comment: str) -> None:
    home = os.path.join(home_root, account)
    cmd = ["useradd", "--create-home", "--home-dir", home, "--user-group", "--comment", comment, account]
    subprocess.run(cmd, check=True, capture_output=True)


def uid(account: str) -> int:
    return pwd.getpwnam(account).pw_uid


# --- the names (no accounts made) ------------------------------------------------------------


def test_names_that_looked_alike_get_different_account_names():
    assert os_username("nb-", ADA) == "nb-ada-lovelace-examp-7799473f"
    assert os_username("nb-", LOOK_ALIKE) != os_username("nb-", ADA)
    # Plain names stay plain, unless they end like a hashed name.
    assert os_username("nb-", "grace") == "nb-grace"
    assert os_username("nb-", "ci-0a1b2c3d").startswith("nb-ci-0a1b2c3d-")


def test_the_legacy_names_are_what_older_notebench_gave():
    # Computed with the code before the fix: accounts made then are found under these names.
    old = {ADA: "nb-ada-lovelace-examp-7799473f", LOOK_ALIKE: "nb-ada-lovelace-examp-7799473f",
           "Ada": "nb-ada-99a563ab", "ci-0a1b2c3d": "nb-ci-0a1b2c3d", "grace": "nb-grace"}
    assert {name: os_username("nb-", name, legacy=True) for name in old} == old


def test_shared_homes_are_one_per_hub_name(tmp_path):
    accounts = UserAccounts(isolate_users=False, shared_homes_dir=str(tmp_path))
    homes = {accounts.home(name) for name in (ADA, LOOK_ALIKE, "ada", "ada.lovelace")}
    assert len(homes) == 4


def test_a_runtime_directory_is_made_private_and_a_link_or_a_file_is_refused(tmp_path):
    accounts = UserAccounts(isolate_users=False, shared_homes_dir=str(tmp_path), runtime_root=str(tmp_path / "rt"))
    path = accounts.prepare_runtime_dir("ada")
    assert path == str(tmp_path / "rt")
    assert os.stat(path).st_mode & 0o777 == 0o700
    os.chmod(path, 0o755)
    accounts.prepare_runtime_dir("ada")
    assert os.stat(path).st_mode & 0o777 == 0o700  # made private again
    for planted in ("link", "file"):
        other = UserAccounts(isolate_users=False, runtime_root=str(tmp_path / planted))
        if planted == "link":
            (tmp_path / "link").symlink_to(tmp_path / "rt")
        else:
            (tmp_path / "file").write_text("")
        with pytest.raises(RuntimeError, match="not a directory"):
            other.prepare_runtime_dir("ada")


# --- real accounts -----------------------------------------------------------------------------


@pytest.fixture
def prefix():
    """A prefix no account on this machine has (short: hashed names stay within 32 characters)."""
    taken = {p.pw_name for p in pwd.getpwall()}
    while True:
        prefix = f"t{secrets.token_hex(2)[:3]}-"
        if not any(name.startswith(prefix) for name in taken):
            break
    yield prefix
    for entry in pwd.getpwall():
        if entry.pw_name.startswith(prefix):
            subprocess.run(["userdel", "--remove", entry.pw_name], capture_output=True)


@pytest.fixture
def new_accounts(prefix, tmp_path):
    """Makes UserAccounts as the hub and the executor do (each its own, from the same settings)."""
    home_root = tmp_path / "homes"
    home_root.mkdir()

    def make():
        return UserAccounts(isolate_users=True, system_user_prefix=prefix, system_home_root=str(home_root))

    return make


@root_only
def test_each_account_gets_its_own_runtime_directory_under_a_short_root(new_accounts, tmp_path):
    root = tmp_path / "rt"
    accounts = new_accounts()
    accounts.runtime_root = str(root)
    for name in ("ada", "grace"):
        accounts.prepare(name)
    paths = {name: accounts.prepare_runtime_dir(name) for name in ("ada", "grace")}
    assert len(set(paths.values())) == 2
    assert (os.stat(root).st_uid, os.stat(root).st_mode & 0o777) == (0, 0o755)
    for name, path in paths.items():
        info = os.stat(path)
        assert (info.st_uid, info.st_mode & 0o777) == (accounts.uid_gid(name)[0], 0o700)
    # Made by someone else first: taken back.
    os.chown(paths["ada"], *accounts.uid_gid("grace"))
    accounts.prepare_runtime_dir("ada")
    assert os.stat(paths["ada"]).st_uid == accounts.uid_gid("ada")[0]
    # The default root leaves room for the longest kernel socket name (a socket's path: 107 bytes at most).
    longest = len(UserAccounts(isolate_users=True).runtime_root) + len("/4294967295/kernel-") + 36 + len("-ipc-65535")
    assert longest < 107


@root_only
def test_look_alike_names_get_different_accounts(new_accounts):
    accounts = new_accounts()
    for name in (ADA, LOOK_ALIKE):
        accounts.prepare(name)
    assert accounts.os_user(ADA) != accounts.os_user(LOOK_ALIKE)
    assert uid(accounts.os_user(ADA)) != uid(accounts.os_user(LOOK_ALIKE))
    assert accounts.home(ADA) != accounts.home(LOOK_ALIKE)
    # Each account says whose it is.
    assert pwd.getpwnam(accounts.os_user(ADA)).pw_gecos == owner_tag(ADA)


@root_only
def test_the_same_name_keeps_its_account(new_accounts):
    hub = new_accounts()
    hub.prepare(ADA)
    account, home = hub.os_user(ADA), hub.home(ADA)
    executor = new_accounts()  # another process, later
    assert (executor.os_user(ADA), executor.home(ADA)) == (account, home)
    executor.prepare(ADA)
    assert uid(executor.os_user(ADA)) == uid(account)


@root_only
@pytest.mark.parametrize("name", ["grace", LOOK_ALIKE, ADA])
def test_an_account_made_by_older_notebench_keeps_its_name_and_files(new_accounts, prefix, name):
    accounts = new_accounts()
    legacy = os_username(prefix, name, legacy=True)
    old_useradd(legacy, accounts.system_home_root)
    with open(os.path.join(accounts.system_home_root, legacy, "thesis.tex"), "w") as f:
        f.write("years of work")
    before = uid(legacy)

    assert accounts.os_user(name) == legacy
    accounts.prepare(name)
    assert accounts.os_user(name) == legacy and uid(legacy) == before
    assert pwd.getpwnam(legacy).pw_gecos == owner_tag(name)  # adopted: theirs from now on
    with open(os.path.join(accounts.home(name), "thesis.tex")) as f:
        assert f.read() == "years of work"


@root_only
def test_an_account_older_notebench_shared_goes_to_one_user_only(new_accounts, prefix):
    # Before the fix both names had this one account; the first to use it after the upgrade keeps it.
    accounts = new_accounts()
    shared = os_username(prefix, ADA)
    old_useradd(shared, accounts.system_home_root)
    accounts.prepare(LOOK_ALIKE)
    assert accounts.os_user(LOOK_ALIKE) == shared
    with pytest.raises(AccountClash) as refused:
        accounts.prepare(ADA)
    assert f"hub user {ADA!r} maps to the OS account {shared!r}, which is another hub user's" in str(refused.value)
    with pytest.raises(AccountClash):
        new_accounts().os_user(ADA)  # never runs anything as that account for them either


@root_only
def test_an_account_older_notebench_shared_the_other_way_round(new_accounts, prefix):
    accounts = new_accounts()
    shared = os_username(prefix, ADA)
    old_useradd(shared, accounts.system_home_root)
    accounts.prepare(ADA)
    accounts.prepare(LOOK_ALIKE)  # its name no longer maps there: an account of its own
    assert accounts.os_user(ADA) == shared
    assert accounts.os_user(LOOK_ALIKE) != shared
    assert uid(accounts.os_user(LOOK_ALIKE)) != uid(shared)


@root_only
@pytest.mark.parametrize(
    "comment, whose",
    [(owner_tag("someone-else"), "another hub user's"), ("Bob the admin", "not one Notebench made")],
    ids=["another-hub-user", "not-made-by-notebench"],
)
def test_an_account_that_is_not_theirs_is_refused(new_accounts, prefix, comment, whose):
    accounts = new_accounts()
    tagged_useradd(prefix + "bob", accounts.system_home_root, comment)
    with pytest.raises(AccountClash) as refused:
        accounts.prepare("bob")
    assert f"maps to the OS account '{prefix}bob', which is {whose}" in str(refused.value)
    assert pwd.getpwnam(prefix + "bob").pw_gecos == comment  # left as it was


@root_only
def test_an_account_with_another_home_is_not_taken_over(new_accounts, prefix, tmp_path):
    # E.g. a system account whose name a hub user maps to: never run as it, never chmod its home.
    accounts = new_accounts()
    elsewhere = tmp_path / "elsewhere"
    subprocess.run(["useradd", "--home-dir", str(elsewhere), "--no-create-home", prefix + "svc"], check=True)
    with pytest.raises(AccountClash):
        accounts.prepare("svc")
    assert not elsewhere.exists()


# --- end to end: what a user of the hub sees -------------------------------------------------


@pytest.fixture
def hub_users(hub):
    """Makes hub users and removes them, and the OS accounts made for them, at the end."""
    made = []

    def make(name):
        made.append(name)
        return hub.new_user(name)

    yield make
    for name in made:
        if hub.server(name) is not None:
            hub.stop_server(name)
        hub.api("DELETE", f"/users/{name}")
        for account in {os_username("nb-", name), os_username("nb-", name, legacy=True)}:
            subprocess.run(["userdel", "--remove", account], capture_output=True)


@root_only
def test_look_alike_hub_users_run_as_different_accounts(hub, hub_users):
    ada = f"ada.{secrets.token_hex(3)}@example.org"
    look_alike = os_username("nb-", ada).removeprefix("nb-")  # older Notebench gave both this account
    pids = {}
    for name in (ada, look_alike):
        hub_users(name)
        assert hub.spawn(name, "cpu").status_code in (201, 202)
        pids[name] = hub.server(name)["state"]["pid"]
    uids = {name: os.stat(f"/proc/{pid}").st_uid for name, pid in pids.items()}
    assert uids[ada] != uids[look_alike]
    assert uids[ada] == uid(os_username("nb-", ada))


@root_only
def test_a_clash_fails_spawns_and_jobs_with_a_clear_error(hub, hub_users, tmp_path):
    name = f"clash-{secrets.token_hex(3)}"
    token = hub_users(name)
    tagged_useradd(f"nb-{name}", tmp_path, owner_tag("someone-else"))
    expected = f"maps to the OS account 'nb-{name}', which is another hub user's"

    r = hub.spawn(name, "cpu", wait=False)
    assert r.status_code == 409 and expected in r.json()["message"], r.text
    assert hub.server(name) is None

    r = hub.executor("POST", "jobs", token, json={"notebook": notebook("1 + 1")})
    assert r.status_code == 409 and expected in r.json()["message"], r.text
    assert hub.executor("GET", "jobs", token).json()["jobs"] == []  # nothing queued to fail later
