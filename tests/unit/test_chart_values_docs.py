"""The chart's values schema documents every value, and the README's values reference is current.

As in Zero to JupyterHub, the schema is the documentation: every schema node with a type, every
property and every rule has a description, every key of values.yaml has one, and the values
reference in helm/notebench/README.md is what scripts/chart-readme renders from them. No cluster,
no Helm: plain files.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "notebench"
SCRIPT = ROOT / "scripts" / "chart-readme"
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def described(node: dict) -> bool:
    return isinstance(node.get("description"), str) and bool(node["description"].strip())


def nodes(node, pointer=""):
    """(JSON pointer, node) of every schema object in the document."""
    if isinstance(node, dict):
        yield pointer, node
        for key, child in node.items():
            yield from nodes(child, f"{pointer}/{key}")
    elif isinstance(node, list):
        for i, child in enumerate(node):
            yield from nodes(child, f"{pointer}/{i}")


def resolve(node: dict, schema: dict = SCHEMA) -> dict:
    """A node with its $ref merged in (its own keys win)."""
    if "$ref" not in node:
        return node
    target = resolve(schema["$defs"][node["$ref"].removeprefix("#/$defs/")], schema)
    return {**target, **{k: v for k, v in node.items() if k != "$ref"}}


def dotted(path) -> str:
    """("singleuser", "profiles", None, "gpus") -> singleuser.profiles[].gpus, as in the README."""
    return ".".join("[]" if key is None else str(key) for key in path).replace(".[]", "[]")


def schema_node(path, schema: dict = SCHEMA) -> dict:
    """The schema node of a value path (keys; None for a list entry), as Helm's validation finds it."""
    node = schema
    for i, key in enumerate(path):
        node_ = resolve(node, schema)
        where = dotted(path[: i + 1])
        if key is None:
            assert isinstance(node_.get("items"), dict), f"{where}: values.yaml has a list the schema has no items for"
            node = node_["items"]
        elif key in node_.get("properties", {}):
            node = node_["properties"][key]
        elif isinstance(node_.get("additionalProperties"), dict):
            node = node_["additionalProperties"]
        else:
            raise AssertionError(f"{where}: in values.yaml but not in values.schema.json")
    return node


def value_paths(value, path=()):
    """Every key path in values.yaml (list entries as None), each key and list entry included."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield (*path, key)
            yield from value_paths(child, (*path, key))
    elif isinstance(value, list):
        for child in value:
            if isinstance(child, (dict, list)):
                yield (*path, None)
                yield from value_paths(child, (*path, None))


def undescribed_values(values: dict, schema: dict = SCHEMA) -> list[str]:
    """The value paths of values.yaml whose schema node (or what it refers to) has no description."""
    undescribed = []
    for path in value_paths(values):
        node = schema_node(path, schema)
        if not (described(node) or described(resolve(node, schema))):
            undescribed.append(dotted(path))
    return undescribed


def test_every_typed_node_and_property_of_the_schema_has_a_description():
    typed = [p for p, n in nodes(SCHEMA) if isinstance(n.get("type"), (str, list))]
    properties = [
        f"{p}/properties/{key}"
        for p, n in nodes(SCHEMA)
        if isinstance(n.get("properties"), dict) and "/if" not in p and "/then" not in p  # not the rules' conditions
        for key in n["properties"]
    ]
    assert len(typed) > 100 and len(properties) > 100  # the walk found the schema
    by_pointer = dict(nodes(SCHEMA))
    missing = [p or "/" for p in sorted(set(typed) | set(properties)) if not described(by_pointer[p])]
    assert not missing, f"values.schema.json: no description at {missing}"


def test_every_rule_between_values_has_a_description():
    assert SCHEMA["allOf"], "the schema's rules (if/then) moved: update this test"
    assert all(described(rule) for rule in SCHEMA["allOf"])


def test_every_value_in_values_yaml_has_a_described_schema_node():
    """Adding a value to values.yaml without describing it in the schema fails here."""
    assert len(list(value_paths(VALUES))) > 100  # the walk found the values
    assert undescribed_values(VALUES) == [], "values.yaml keys without a description in values.schema.json"


def test_a_value_without_a_description_is_caught():
    """The check above is not vacuous: an undescribed value, or one the schema lacks, is found."""
    schema = copy.deepcopy(SCHEMA)
    del schema["properties"]["cull"]["properties"]["every"]["description"]
    del schema["$defs"]["tolerations"]["items"]["properties"]["effect"]["description"]
    assert undescribed_values(VALUES, schema) == ["cull.every", "singleuser.profiles[].tolerations[].effect"]
    values = {**VALUES, "hub": {**VALUES["hub"], "replicas": 2}}
    with pytest.raises(AssertionError, match="hub.replicas: in values.yaml but not in values.schema.json"):
        undescribed_values(values)


def chart_readme(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_the_readme_values_reference_is_current():
    result = chart_readme("--check")
    assert result.returncode == 0, result.stderr


def test_a_stale_readme_is_reported_and_regenerated(tmp_path):
    chart = tmp_path / "notebench"
    for name in ("README.md", "values.schema.json", "values.yaml"):
        (chart / name).parent.mkdir(exist_ok=True)
        shutil.copy(CHART / name, chart / name)
    schema = json.loads((chart / "values.schema.json").read_text())
    schema["properties"]["cull"]["properties"]["timeout"]["description"] = "Seconds idle, now reworded."
    (chart / "values.schema.json").write_text(json.dumps(schema, indent=2))
    readme = (chart / "README.md").read_text()

    stale = chart_readme("--check", "--chart", str(chart))
    assert stale.returncode == 1
    assert "the values reference is not current" in stale.stderr and "Seconds idle, now reworded." in stale.stderr
    assert (chart / "README.md").read_text() == readme  # --check writes nothing

    assert chart_readme("--chart", str(chart)).returncode == 0
    rewritten = (chart / "README.md").read_text()
    assert "| `cull.timeout` | integer ≥ 1 | `3600` | Seconds idle, now reworded. |" in rewritten
    # only the part between the markers changed: the hand-written rest is kept
    head = readme.split("<!-- values-reference:start -->")[0]
    assert rewritten.startswith(head) and rewritten.endswith(readme.split("<!-- values-reference:end -->")[1])
    assert chart_readme("--check", "--chart", str(chart)).returncode == 0


def test_an_undescribed_value_stops_the_generator(tmp_path):
    chart = tmp_path / "notebench"
    chart.mkdir()
    for name in ("README.md", "values.yaml"):
        shutil.copy(CHART / name, chart / name)
    schema = json.loads((CHART / "values.schema.json").read_text())
    del schema["properties"]["cull"]["properties"]["every"]["description"]
    (chart / "values.schema.json").write_text(json.dumps(schema))
    result = chart_readme("--check", "--chart", str(chart))
    assert result.returncode == 2 and "cull.every has no description" in result.stderr
