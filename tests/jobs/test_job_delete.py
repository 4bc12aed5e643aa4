"""DELETE /api/jobs/{id}: an ended job's owner (or an admin) deletes it, with its directory; others
get 404 as for GET; a queued or running job is refused with 409 and left as it was."""

from __future__ import annotations

import pytest

from tests.support.jobs import job_dir, submit, unique


@pytest.fixture(scope="module")
def people(hub):
    owner, other = unique("jp-del-own"), unique("jp-del-oth")
    return {"owner": owner, "owner_token": hub.new_user(owner), "other": other, "other_token": hub.new_user(other)}


def ended_job(hub, token) -> dict:
    job = submit(hub, token, "print('to be deleted')")
    assert hub.wait_job(job["id"], token)["status"] == "succeeded"
    assert (job_dir(hub, job["id"]) / "output.ipynb").exists()
    return job


def assert_error(r, status: int, field: str | None) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["status"] == status and body["message"] and body["field"] == field, body


def test_anonymous_and_other_users_cannot_delete(hub, people):
    job = ended_job(hub, people["owner_token"])
    assert_error(hub.executor("DELETE", f"jobs/{job['id']}", ""), 401, None)
    assert_error(hub.executor("DELETE", f"jobs/{job['id']}", people["other_token"]), 404, None)  # as for GET
    # Untouched: the owner still has it, with its output.
    assert hub.executor("GET", f"jobs/{job['id']}", people["owner_token"]).json()["status"] == "succeeded"
    assert hub.executor("GET", f"jobs/{job['id']}/output", people["owner_token"]).status_code == 200


@pytest.mark.parametrize("who", ["owner", "admin"])
def test_owner_or_admin_deletes_an_ended_job(hub, people, who):
    job = ended_job(hub, people["owner_token"])
    assert hub.executor("GET", f"jobs/{job['id']}/output.html", people["owner_token"]).status_code == 200  # cached
    token = people["owner_token"] if who == "owner" else hub.admin_token
    r = hub.executor("DELETE", f"jobs/{job['id']}", token)
    assert r.status_code == 204, r.text
    assert not job_dir(hub, job["id"]).exists()
    assert not list((hub.data_dir / "executor" / "html").glob(f"{job['id']}-*.html"))
    for path in (f"jobs/{job['id']}", f"jobs/{job['id']}/log", f"jobs/{job['id']}/output"):
        assert_error(hub.executor("GET", path, people["owner_token"]), 404, None)
    listed = hub.executor("GET", "jobs", people["owner_token"], params={"limit": "200"}).json()["jobs"]
    assert job["id"] not in [j["id"] for j in listed]
    assert_error(hub.executor("DELETE", f"jobs/{job['id']}", token), 404, None)  # once only


def test_a_queued_or_running_job_is_not_deleted(hub, people):
    token = people["owner_token"]
    job = submit(hub, token, "import time; time.sleep(120)", timeout_seconds=300)
    for status in (("queued", "running"), ("running",)):
        hub.wait_job(job["id"], token, until=status)
        r = hub.executor("DELETE", f"jobs/{job['id']}", token)
        assert_error(r, 409, "status")
        assert "cancel it first" in r.json()["message"]
        assert hub.executor("GET", f"jobs/{job['id']}", token).json()["status"] in ("queued", "running")
        assert job_dir(hub, job["id"]).exists()
    assert hub.executor("POST", f"jobs/{job['id']}/cancel", token).json()["status"] == "cancelled"
    assert hub.executor("DELETE", f"jobs/{job['id']}", token).status_code == 204


@pytest.mark.parametrize(
    "path, status",
    [
        ("jobs/0", 404),
        ("jobs/99999999999", 404),
        ("jobs/" + "9" * 19, 404),
        ("jobs/" + "9" * 40, 404),  # past 64 bits: exists nowhere
        ("jobs/-1", 404),
        ("jobs/1.5", 404),
        ("jobs/abc", 404),
        ("jobs/%2e%2e", 404),
        ("jobs/1%2F2", 404),
        ("jobs/", 404),
        ("jobs", 405),  # the collection is not deleted
    ],
)
def test_bad_ids(hub, people, path, status):
    r = hub.executor("DELETE", path, people["owner_token"])
    assert r.status_code == status, r.text
    assert r.json()["status"] == status and r.json()["message"]


def test_unknown_query_parameters_are_refused(hub, people):
    job = ended_job(hub, people["owner_token"])
    r = hub.executor("DELETE", f"jobs/{job['id']}", people["owner_token"], params={"force": "1"})
    assert_error(r, 400, "force")
    assert hub.executor("GET", f"jobs/{job['id']}", people["owner_token"]).status_code == 200
