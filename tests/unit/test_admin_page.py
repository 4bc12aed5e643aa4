"""The admin page's helpers (notebench.hub.admin_page) without a hub: a server's profile in each
shape of user_options, and whose a GPU lease is."""

from types import SimpleNamespace

from notebench.hub.admin_page import lease_owner, server_profile


def test_a_servers_profile_from_its_options():
    assert server_profile(SimpleNamespace(user_options={"profile": "gpu"})) == "gpu"
    assert server_profile(SimpleNamespace(user_options={"user_options": {"profile": "gpu"}})) == "gpu"  # JupyterHub 6's shape
    assert server_profile(SimpleNamespace(user_options={})) == ""
    assert server_profile(SimpleNamespace(user_options=None)) == ""


def test_a_spawner_that_resolves_profiles_says_which_one_applies():
    default = SimpleNamespace(name="cpu")
    assert server_profile(SimpleNamespace(user_options={}, chosen_profile=lambda: default)) == "cpu"

    def unknown():
        raise ValueError("unknown profile 'old'")

    assert server_profile(SimpleNamespace(user_options={"profile": "old"}, chosen_profile=unknown)) == "old"


def test_whose_a_lease_is():
    assert lease_owner("server:ada/") == "ada"
    assert lease_owner("server:ada/big") == "ada"
    assert lease_owner("job:12") is None  # the page finds the job's owner in the executor's list
