"""Ground-truth labels for an endpoint's predictions: ``POST .../endpoints/{name}/feedback``.

A body is ``[{"request_id": …, "label": …}, …]`` (JSON) or CSV with the header row
``request_id,label``; at most ``MAX_ROWS`` rows. A request id is the ``X-Notebench-Request-Id``
an invocation of the endpoint answered with (32 hex digits). A label is a number, a string or a
bool (CSV: ``true``/``false`` are bools, integers and decimals numbers, anything else a string);
in JSON it may also be a list of them, one per row of a multi-row request. The body is the
caller's: every row is checked (400 naming ``N.request_id`` or ``N.label``, N from 0) before
anything is stored.

Ids that are not a stored prediction of *this* endpoint are answered back as ``unknown`` (nothing
tells whether they belong to another endpoint); a second label for the same request replaces the
first. Labels are not written to the audit log (a high volume of data, not a change of the platform).
"""

from __future__ import annotations

import csv
import io
import math
import re

import sqlalchemy as sa

from notebench.executor.db import Feedback, Prediction, utcnow
from notebench.executor.errors import NotebenchError

MAX_ROWS = 10_000
MAX_LABEL_CHARS = 256  # a string label (a class name)
MAX_LABEL_ITEMS = 10_000  # a list label (a multi-row request)
REQUEST_ID = re.compile(r"[0-9a-f]{32}")
_INT = re.compile(r"[+-]?[0-9]{1,18}")
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,3})?")


def _scalar(value, field: str):
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) >= 2**63:
            raise NotebenchError(400, field, f"{field}: the number is too large")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NotebenchError(400, field, f"{field}: NaN and Infinity are not labels")
        return value
    if isinstance(value, str):
        if not value or len(value) > MAX_LABEL_CHARS:
            raise NotebenchError(400, field, f"{field}: a string label has 1 to {MAX_LABEL_CHARS} characters")
        return value
    raise NotebenchError(400, field, f"{field}: a label is a number, a string or a bool (or a list of them)")


def check_label(value, field: str):
    if isinstance(value, list):
        if not 1 <= len(value) <= MAX_LABEL_ITEMS:
            raise NotebenchError(400, field, f"{field}: a list label has 1 to {MAX_LABEL_ITEMS} items")
        return [_scalar(v, field) for v in value]
    return _scalar(value, field)


def check_request_id(value, field: str) -> str:
    if not isinstance(value, str) or not REQUEST_ID.fullmatch(value):
        raise NotebenchError(400, field, f"{field}: a request id is the X-Notebench-Request-Id of an invocation (32 hex digits)")
    return value


def _check_count(n: int) -> None:
    if n > MAX_ROWS:
        raise NotebenchError(400, "body", f"at most {MAX_ROWS} labels per request, not {n}")


def parse_json(body: bytes) -> list[tuple[str, object]]:
    import json

    try:
        data = json.loads(body or b"null")
    except (ValueError, RecursionError) as e:
        raise NotebenchError(400, "body", f"the body is not valid JSON: {e}")
    if not isinstance(data, list):
        raise NotebenchError(400, "body", 'the body must be a JSON list of {"request_id": …, "label": …}')
    _check_count(len(data))
    rows = []
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise NotebenchError(400, str(i), f'{i}: each item is {{"request_id": …, "label": …}}')
        extra = sorted(set(row) - {"request_id", "label"})
        if extra:
            raise NotebenchError(400, f"{i}.{extra[0]}", f"{i}.{extra[0]}: unknown field")
        for key in ("request_id", "label"):
            if key not in row:
                raise NotebenchError(400, f"{i}.{key}", f"{i}.{key}: missing")
        rows.append((check_request_id(row["request_id"], f"{i}.request_id"), check_label(row["label"], f"{i}.label")))
    return rows


def csv_value(text: str):
    """A CSV cell as a label: true/false a bool, an integer or a decimal a number, else the text."""
    if text in ("true", "false", "True", "False", "TRUE", "FALSE"):
        return text.lower() == "true"
    if _INT.fullmatch(text):
        return int(text)
    if _DECIMAL.fullmatch(text):
        return float(text)
    return text


def parse_csv(body: bytes) -> list[tuple[str, object]]:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise NotebenchError(400, "body", f"the CSV is not UTF-8: {e}")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != ["request_id", "label"]:
            raise NotebenchError(400, "body", "the CSV's first row must be the header request_id,label")
        rows: list[tuple[str, object]] = []
        for cells in reader:
            if not cells:  # a blank line
                continue
            _check_count(len(rows) + 1)
            if len(cells) != 2:
                raise NotebenchError(400, str(len(rows)), f"{len(rows)}: line {reader.line_num} has {len(cells)} cells, not 2")
            n = len(rows)
            rows.append((check_request_id(cells[0].strip(), f"{n}.request_id"),
                         check_label(csv_value(cells[1].strip()), f"{n}.label")))
    except csv.Error as e:
        raise NotebenchError(400, "body", f"the CSV cannot be read: {e}")
    return rows


def parse(body: bytes, content_type: str | None) -> list[tuple[str, object]]:
    """The (request id, label) rows of a feedback body, checked; a NotebenchError (400, 415) if it is wrong."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media == "application/json":
        return parse_json(body)
    if media == "text/csv":
        return parse_csv(body)
    raise NotebenchError(415, "Content-Type", "labels are application/json or text/csv (header row request_id,label)")


def store(sessions, endpoint_id: int, rows: list[tuple[str, object]], by: str) -> tuple[int, list[str]]:
    """Record the labels of this endpoint's predictions (the latest label of a request replaces an
    earlier one); returns how many were accepted and the ids that are no prediction of it."""
    labels = dict(rows)  # the last of a request in the body wins
    ids = list(labels)
    for attempt in range(2):  # a concurrent post of the same new id: once more, as an update
        try:
            with sessions() as s:
                known: set[str] = set()
                existing: dict[str, Feedback] = {}
                for start in range(0, len(ids), 500):
                    chunk = ids[start:start + 500]
                    known.update(s.scalars(sa.select(Prediction.request_id).where(
                        Prediction.endpoint_id == endpoint_id, Prediction.request_id.in_(chunk))).all())
                    existing.update((f.request_id, f) for f in s.scalars(sa.select(Feedback).where(
                        Feedback.endpoint_id == endpoint_id, Feedback.request_id.in_(chunk))).all())
                now = utcnow()
                for request_id in ids:
                    if request_id not in known:
                        continue
                    row = existing.get(request_id)
                    if row is None:
                        s.add(Feedback(endpoint_id=endpoint_id, request_id=request_id, label=labels[request_id], at=now, by=by))
                    else:
                        row.label, row.at, row.by = labels[request_id], now, by
                s.commit()
            break
        except sa.exc.IntegrityError:
            if attempt:
                raise
    return len(known), [i for i in ids if i not in known]
