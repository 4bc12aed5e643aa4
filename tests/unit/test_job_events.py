"""The strict parser of a job's reports (executor/runtime/events.py), on every shape a job could write."""

import json
import os

import pytest

from notebench.executor.runtime.events import (
    MAX_EVENTS_BYTES,
    MalformedReport,
    notebook_progress,
    parse_event,
    read_events,
)

GOOD = [
    ({"event": "started", "time": 1.5}, {"event": "started", "time": 1.5}),
    ({"event": "started", "kernel_pid": 12, "runner_pid": 11}, {"event": "started", "kernel_pid": 12, "runner_pid": 11}),
    ({"event": "finished", "status": "succeeded"}, {"event": "finished", "status": "succeeded", "error": None}),
    ({"event": "finished", "status": "failed", "error": {"ename": "E", "evalue": "x" * 20000, "cell_index": 3}},
     {"event": "finished", "status": "failed", "error": {"ename": "E", "evalue": "x" * 8192, "cell_index": 3}}),
    ({"event": "finished", "status": "failed", "error": {"ename": "E", "cell_index": 2, "output_cell_index": 4}},
     {"event": "finished", "status": "failed", "error": {"ename": "E", "evalue": "", "cell_index": 2, "output_cell_index": 4}}),
]


@pytest.mark.parametrize("event, parsed", GOOD)
def test_the_runners_own_reports_are_read(event, parsed):
    assert parse_event(json.dumps(event)) == parsed


BAD = {
    "not JSON": "nope",
    "invalid UTF-8": b"\xff\xfe{}",
    "a number": "42",
    "null": "null",
    "no event": json.dumps({"status": "succeeded"}),
    "an unknown event": json.dumps({"event": "queued"}),
    "an unknown field": json.dumps({"event": "started", "kill": [1]}),
    "status queued": json.dumps({"event": "finished", "status": "queued"}),
    "status running": json.dumps({"event": "finished", "status": "running"}),
    "status timed_out": json.dumps({"event": "finished", "status": "timed_out"}),
    "status missing": json.dumps({"event": "finished"}),
    "status a list": json.dumps({"event": "finished", "status": ["succeeded"]}),
    "error a string": json.dumps({"event": "finished", "status": "failed", "error": "x"}),
    "error with more": json.dumps({"event": "finished", "status": "failed", "error": {"ename": "E", "x": 1}}),
    "cell_index negative": json.dumps({"event": "finished", "status": "failed", "error": {"cell_index": -1}}),
    "cell_index a bool": json.dumps({"event": "finished", "status": "failed", "error": {"cell_index": True}}),
    "output_cell_index a string": json.dumps({"event": "finished", "status": "failed", "error": {"output_cell_index": "4"}}),
    "time NaN": '{"event": "started", "time": NaN}',
    "pid a float": json.dumps({"event": "started", "kernel_pid": 1.0}),
    "deep nesting": "[" * 50000 + "]" * 50000,
}


@pytest.mark.parametrize("name", list(BAD))
def test_anything_else_is_a_malformed_report(name):
    with pytest.raises(MalformedReport):
        parse_event(BAD[name])


def test_the_file_is_read_up_to_the_jobs_end_and_no_further(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"event": "started"}\n{"event": "finished", "status": "failed"}\nrubbish\n{"event": "started"')
    events, offset = read_events(path, 0)
    assert [e["event"] for e in events] == ["started", "finished"]
    assert offset == path.stat().st_size - len('{"event": "started"')  # an unfinished line waits


@pytest.mark.parametrize("make", ["link", "fifo", "too large", "hard link"])
def test_a_file_that_is_not_the_runners_is_a_malformed_report(tmp_path, make):
    path = tmp_path / "events.jsonl"
    if make == "link":
        path.symlink_to("/etc/shadow")
    elif make == "fifo":
        os.mkfifo(path)
    elif make == "too large":
        path.write_bytes(b" " * (MAX_EVENTS_BYTES + 1))
    else:
        (tmp_path / "other").write_text("{}\n")
        os.link(tmp_path / "other", path)
    with pytest.raises(MalformedReport):
        read_events(path, 0)


@pytest.mark.parametrize("content", ["[]", "{}", '{"cells": 3}', '{"cells": ["x", 1, null]}', '{"cells": [{"metadata": 5}]}',
                                     '{"cells": [{"metadata": {"tags": 7, "papermill": "done"}}]}', "[" * 5000, "\xff"])
def test_progress_survives_any_output_notebook(tmp_path, content):
    path = tmp_path / "output.ipynb"
    path.write_text(content, errors="surrogateescape") if content != "\xff" else path.write_bytes(b"\xff")
    progress = notebook_progress(path, 1024 * 1024)
    assert progress is None or progress[0] == 0
