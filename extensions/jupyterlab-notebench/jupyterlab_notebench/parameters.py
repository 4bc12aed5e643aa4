"""Read a notebook's `parameters` cell (the papermill convention) to build the job form."""

from __future__ import annotations

import ast

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
