"""``c.MlflowService``: the MLflow service's settings are traitlets configuration (issue 14).

The fast tests read the Application's resolved settings, starting nothing: with no configuration
they are what the service used before it was an Application; the environment variables the hub
(hub/config.py) and the Helm chart set are still the defaults; the operator's config file
(``$NOTEBENCH_USER_CONFIG``, as for the executor) wins over them, and the command line over both.

The last tests run a hub of their own whose config file sets ``c.MlflowService.default_permission``
and ``c.MlflowService.max_api_body_size`` (the hub still hands the service
``NOTEBENCH_MLFLOW_DEFAULT_PERMISSION=READ``, c.Notebench's default) and check both through
/services/mlflow/, with the fixtures of tests/mlflow/conftest.py (as test_mlflow_service.py does).
That the environment variables still work through the real service is what test_mlflow_service.py
(the 16 MiB limit) and test_mlflow_namespaces.py (``c.Notebench.mlflow_default_permission``, handed
over as ``NOTEBENCH_MLFLOW_DEFAULT_PERMISSION``) check.
"""

import logging
import uuid

import pytest

from notebench.hub.mlflow_service.app import ENV, MlflowService
from tests.support.launcher import BASE_CONFIG, running_hub
from tests.support.mlflow import api

SETTINGS = ("data_dir", "default_permission", "log_level", "backend_port", "backend_wait",
            "max_body_size", "max_api_body_size", "upstream_timeout")


@pytest.fixture
def environ(monkeypatch, tmp_path):
    """No NOTEBENCH_MLFLOW_* setting, no config file; the data dir the hub would give."""
    for name in [*ENV.values(), "NOTEBENCH_USER_CONFIG"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NOTEBENCH_DATA_DIR", str(tmp_path / "data"))
    return monkeypatch


def resolved(*argv):
    app = MlflowService()
    app.initialize(list(argv))
    return {name: getattr(app, name) for name in SETTINGS}


def user_config(tmp_path, monkeypatch, text):
    path = tmp_path / "notebench_config.py"
    path.write_text(text)
    monkeypatch.setenv("NOTEBENCH_USER_CONFIG", str(path))
    return path


def test_the_defaults_are_the_settings_of_before(environ, tmp_path):
    # the fallbacks of the environment variables the service read (front.py, __main__.py, config.py)
    assert resolved() == {
        "data_dir": str(tmp_path / "data"),
        "default_permission": "READ",
        "log_level": logging.INFO,
        "backend_port": None,
        "backend_wait": 30.0,
        "max_body_size": 64 * 1024**3,
        "max_api_body_size": 16 * 1024**2,
        "upstream_timeout": 3600.0,
    }


def test_each_setting_is_documented_and_configurable():
    traits = MlflowService.class_traits(config=True)
    for name in SETTINGS:
        assert traits[name].help, name
    assert set(ENV) == set(SETTINGS)


def test_the_environment_variables_are_the_defaults(environ):
    values = {
        "data_dir": "/srv/notebench",
        "default_permission": " no_permissions ",  # read as before: stripped, any case
        "log_level": "warning",
        "backend_port": "5123",
        "backend_wait": "2.5",
        "max_body_size": str(1024**3),
        "max_api_body_size": "1048576",
        "upstream_timeout": "60",
    }
    for name, value in values.items():
        environ.setenv(ENV[name], value)
    assert resolved() == {
        "data_dir": "/srv/notebench",
        "default_permission": "NO_PERMISSIONS",
        "log_level": logging.WARNING,
        "backend_port": 5123,
        "backend_wait": 2.5,
        "max_body_size": 1024**3,
        "max_api_body_size": 1024**2,
        "upstream_timeout": 60.0,
    }


def test_a_wrong_permission_in_the_environment_stops_the_service_as_before(environ):
    environ.setenv("NOTEBENCH_MLFLOW_DEFAULT_PERMISSION", "WRITE")
    with pytest.raises(SystemExit, match="NOTEBENCH_MLFLOW_DEFAULT_PERMISSION='WRITE' is not one of READ, USE, "):
        resolved()


def test_the_config_file_wins_over_the_environment(environ, tmp_path):
    # an operator's config file: the hub's and the executor's sections are there too
    user_config(tmp_path, environ, BASE_CONFIG + """
c.Notebench.mlflow_default_permission = "READ"
c.Executor.max_running_jobs = 2
c.MlflowService.default_permission = "no_permissions"
c.MlflowService.max_api_body_size = 1024 * 1024
c.MlflowService.log_level = "DEBUG"
""")
    environ.setenv("NOTEBENCH_MLFLOW_DEFAULT_PERMISSION", "EDIT")
    environ.setenv("NOTEBENCH_MLFLOW_MAX_API_BODY_SIZE", "2048")
    environ.setenv("NOTEBENCH_MLFLOW_UPSTREAM_TIMEOUT", "60")
    settings = resolved()
    assert settings["default_permission"] == "NO_PERMISSIONS"
    assert settings["max_api_body_size"] == 1024 * 1024
    assert settings["log_level"] == logging.DEBUG
    assert settings["upstream_timeout"] == 60.0  # not in the file: the environment's


def test_the_command_line_wins_over_the_config_file(environ, tmp_path):
    user_config(tmp_path, environ, "c.MlflowService.max_api_body_size = 1024\nc.MlflowService.backend_wait = 5\n")
    settings = resolved("--MlflowService.max_api_body_size=4096", "--log-level=ERROR")
    assert settings["max_api_body_size"] == 4096
    assert settings["log_level"] == logging.ERROR
    assert settings["backend_wait"] == 5.0


def test_a_wrong_value_in_the_config_file_stops_the_service(environ, tmp_path):
    user_config(tmp_path, environ, 'c.MlflowService.default_permission = "WRITE"\n')
    with pytest.raises(SystemExit) as stopped:
        resolved()
    assert stopped.value.code == 1


# ---- through a real hub whose config file sets c.MlflowService

CONFIG = BASE_CONFIG + """
c.MlflowService.default_permission = "NO_PERMISSIONS"
c.MlflowService.max_api_body_size = 1024 * 1024
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """This module's own hub (the ``base`` and ``users`` of tests/mlflow/conftest.py use it here)."""
    with running_hub(tmp_path_factory, "mlflow-config", CONFIG) as h:
        yield h


def test_the_config_files_default_permission_takes_effect(base, users):
    _, owner = users["owner"]
    _, other = users["other"]
    r = api(base, owner, "POST", "api/2.0/mlflow/experiments/create", json={"name": f"private-{uuid.uuid4().hex[:8]}"})
    assert r.status_code == 200, r.text
    path = f"api/2.0/mlflow/experiments/get?experiment_id={r.json()['experiment_id']}"
    assert api(base, owner, "GET", path).status_code == 200
    # under the hub's NOTEBENCH_MLFLOW_DEFAULT_PERMISSION=READ the other user would read it
    assert api(base, other, "GET", path).status_code == 403


def test_the_config_files_api_body_limit_takes_effect(base, users):
    _, token = users["owner"]
    headers = {"Content-Type": "application/json"}
    under = b'{"max_results": 1, "filter": "", "pad": "' + b"x" * (1024 * 1024 - 100) + b'"}'
    r = api(base, token, "POST", "api/2.0/mlflow/experiments/search", data=under, headers=headers)
    assert r.status_code != 413, r.text[:300]
    over = b'{"name": "' + b"x" * (2 * 1024 * 1024) + b'"}'  # well under the default 16 MiB
    r = api(base, token, "POST", "api/2.0/mlflow/experiments/create", data=over, headers=headers)
    assert r.status_code == 413, r.text[:300]
    assert r.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    assert "1048576 bytes" in r.json()["message"]
