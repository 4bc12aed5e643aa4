"""The `notebench` command: clear errors and non-zero exits on bad input."""

import socket
import subprocess

from tests.support.launcher import NOTEBENCH


def run(*args, **kwargs):
    return subprocess.run(NOTEBENCH + list(args), capture_output=True, text=True, timeout=60, **kwargs)


def test_missing_config_file_is_a_clear_error(tmp_path):
    r = run("up", "--data-dir", str(tmp_path), "--config", str(tmp_path / "nope.py"))
    assert r.returncode == 2
    assert "--config" in r.stderr and "no such file" in r.stderr


def test_port_in_use_is_a_clear_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run("up", "--data-dir", str(tmp_path), "--port", str(port))
    assert r.returncode == 2
    assert f"port {port}" in r.stderr and "already in use" in r.stderr


def test_bad_port_number(tmp_path):
    r = run("up", "--data-dir", str(tmp_path), "--port", "70000")
    assert r.returncode == 2 and "between 1 and 65535" in r.stderr


def test_unknown_command():
    r = run("launch")
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_help_lists_up():
    r = run("--help")
    assert r.returncode == 0 and "up" in r.stdout
