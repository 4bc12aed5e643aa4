"""Read a notebook's `parameters` cell (the papermill convention) to build the job form."""

from __future__ import annotations

import ast
import json

# JSON-able literal types the form can edit, by Python type.
TYPE_NAMES = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict", type(None): "none"}


def parameters_cell(notebook: dict) -> dict | None:
    """The first code cell tagged `parameters`, as papermill picks it."""
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            return cell
    return None


def parse_parameters(source: str) -> list[dict]:
    """Each top-level `name = literal` (or `name: type = literal`) with its type, default and comment.

    Values that are not literals (`x = np.arange(3)`) are listed with type "expression" and their
    source, so the form can show them but not edit them: papermill could only override them with JSON.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise ValueError(f"the parameters cell is not valid Python: {e.msg} (line {e.lineno})") from e
    except (MemoryError, RecursionError):  # what CPython's parser raises for deeply nested code
        raise ValueError("the parameters cell is nested too deeply to read") from None
    lines = source.splitlines()
    parameters = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, value, annotation = node.targets[0].id, node.value, None
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name, value, annotation = node.target.id, node.value, ast.get_source_segment(source, node.annotation)
        else:
            continue
        try:
            default = ast.literal_eval(value)
            kind = TYPE_NAMES.get(type(default), "expression")
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            default, kind = None, "expression"
        if kind == "expression":
            default = ast.get_source_segment(source, value)
        parameters.append(
            {"name": name, "type": kind, "default": default, "annotation": annotation, "help": _comment(lines, node)}
        )
    return parameters


def _comment(lines: list[str], node: ast.stmt) -> str:
    """The `# comment` at the end of the assignment's last line, if any."""
    line = lines[node.end_lineno - 1][node.end_col_offset :]
    hash_at = line.find("#")
    return line[hash_at + 1 :].strip() if hash_at >= 0 else ""


def notebook_parameters(notebook: dict) -> dict:
    cell = parameters_cell(notebook)
    if cell is None:
        return {"has_parameters_cell": False, "parameters": []}
    source = cell.get("source", "")
    if isinstance(source, list):
        source = "".join(source)
    return {"has_parameters_cell": True, "parameters": parse_parameters(source)}


# What a parameter's form field may hold, by its declared type (None is always allowed: papermill
# users write `x = None` to mean "not given").
ACCEPTED = {"int": (int,), "float": (int, float), "list": (list,), "dict": (dict,)}
MAX_LITERAL_CHARS = 64 * 1024  # the executor's limit on all parameters together


def parse_literal(name: str, text: str, declared: str | None = None):
    """A form field's text as papermill users write it (a Python literal: 3, 0.1, None, True,
    [1, 2], {'a': 1}, 'text'), as the JSON value the executor takes. ValueError says what is wrong.

    ``declared``: the type of the notebook's default (parse_parameters); a value of another type is
    refused, except None (and an int where a float is declared, made a float)."""
    if not isinstance(text, str):
        raise ValueError(f"{name}: expected the value as text")
    if len(text) > MAX_LITERAL_CHARS:
        raise ValueError(f"{name}: at most {MAX_LITERAL_CHARS} characters")
    if not text.strip():
        raise ValueError(f"{name}: enter a value (None for none)")
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise ValueError(f"{name}: {text.strip()[:80]!r} is not a Python literal (e.g. 3, 0.5, 'text', [1, 2], {{'a': 1}}, None)") from None
    value = _json_value(name, value)
    accepted = ACCEPTED.get(declared or "")
    if accepted and value is not None:
        if isinstance(value, bool) or not isinstance(value, accepted):
            raise ValueError(f"{name} must be {'an' if declared == 'int' else 'a'} {declared} (or None)")
        if declared == "float":
            value = float(value)
    return value


def _json_value(name: str, value):
    """``value`` (a Python literal) as JSON can carry it: tuples become lists; sets, bytes, complex
    numbers, non-finite floats and dicts with keys other than strings are refused."""
    stack = [value]
    while stack:  # check first, without recursion
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, dict):
            if not all(isinstance(k, str) for k in item):
                raise ValueError(f"{name}: dictionary keys must be strings")
            stack.extend(item.values())
        elif isinstance(item, float) and (item != item or item in (float("inf"), float("-inf"))):
            raise ValueError(f"{name}: NaN and infinity cannot be passed")
        elif item is not None and not isinstance(item, (bool, int, float, str)):
            raise ValueError(f"{name}: a {type(item).__name__} cannot be passed (use a list, dict, number, text or None)")
    try:
        return json.loads(json.dumps(value))  # tuples → lists
    except RecursionError:
        raise ValueError(f"{name}: nested too deeply") from None
