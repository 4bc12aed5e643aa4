"""The images (images/Dockerfile), checked without a Docker engine (there is none here).

What a maintainer would notice going wrong: a base image that moves under us, an image running
as root, a `pip install` that ignores the pins CI tested, pins that no longer cover or match the
dependencies, a COPY of a path that is gone, a command that does not exist. Building the images
and running them is not done here (images/README.md says so).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "images" / "Dockerfile"
INSTALL_SCRIPT = ROOT / "images" / "install-notebench.sh"
CONSTRAINTS = ROOT / "constraints.txt"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VENV_BIN = Path(sys.prefix) / "bin"
# The images the chart runs (their repositories end with these names).
TARGETS = {"hub", "executor", "model-server", "user", "user-cuda"}


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, arguments)


def dockerfile_stages(path: Path = DOCKERFILE) -> dict[str, Stage]:
    """The stages of a Dockerfile by name, with their instructions (continuations joined)."""
    text = re.sub(r"\\\n\s*", " ", "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")))
    stages: dict[str, Stage] = {}
    stage = None
    for line in filter(None, (line.strip() for line in text.splitlines())):
        instruction, _, arguments = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            base, name = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", arguments, re.IGNORECASE).group(1, 2)
            stage = stages[name] = Stage(base=base, name=name)
        else:
            assert stage is not None, f"{instruction} before any FROM"
            stage.instructions.append((instruction, arguments))
    return stages


def lineage(stages: dict[str, Stage], name: str) -> list[Stage]:
    """A stage and the stages it is built FROM, base first."""
    chain = [stages[name]]
    while chain[0].base in stages:
        chain.insert(0, stages[chain[0].base])
    return chain


def effective(stages: dict[str, Stage], name: str, instruction: str) -> str | None:
    """The last value of ``instruction`` an image of target ``name`` ends with."""
    values = [args for stage in lineage(stages, name) for inst, args in stage.instructions if inst == instruction]
    return values[-1] if values else None


def exec_form(arguments: str) -> list[str]:
    assert arguments.startswith("["), f"not in exec form (a shell would be PID 1): {arguments}"
    return yaml.safe_load(arguments)


def constraints() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line and not line.startswith("#"):
            name, sep, pinned = line.partition("==")
            assert sep and re.fullmatch(r"[\w.+!-]+", pinned), f"not an exact pin: {line!r}"
            assert canonicalize_name(name) not in pins, f"pinned twice: {name}"
            pins[canonicalize_name(name)] = pinned
    return pins


@pytest.fixture(scope="module")
def stages():
    return dockerfile_stages()


def chart_images(values, key=""):
    """The image repositories anywhere in the chart's values (``image: {repository: ...}`` and
    the profiles' ``image: repository:tag``)."""
    if isinstance(values, dict):
        if key == "image" and "repository" in values:
            yield values["repository"]
        for k, v in values.items():
            yield from chart_images(v, k)
    elif isinstance(values, list):
        for v in values:
            yield from chart_images(v, key)
    elif key == "image" and isinstance(values, str):
        yield values.rsplit(":", 1)[0]


def test_the_images_the_chart_names_are_targets(stages):
    assert TARGETS <= set(stages)
    values = yaml.safe_load((ROOT / "helm" / "notebench" / "values.yaml").read_text())
    ours = values["hub"]["image"]["repository"].rsplit("/", 1)[0]  # where Notebench's images live
    names = {r.rsplit("/", 1)[-1] for r in chart_images(values) if r.startswith(ours + "/")}
    assert names == TARGETS, f"the chart's images {sorted(names)}, images/Dockerfile's targets {sorted(TARGETS)}"


def test_base_images_are_pinned_to_a_release(stages):
    for stage in stages.values():
        if stage.base in stages:
            continue  # built FROM an earlier stage
        image, _, tag = stage.base.rpartition(":")
        assert image and "@" not in tag and "$" not in stage.base, f"{stage.name}: {stage.base} has no fixed tag"
        assert tag != "latest" and re.search(r"\d+\.\d+\.\d+", tag), f"{stage.name}: {stage.base} is not a patch release"


def test_python_is_3_11_in_every_image(stages):
    # The pins were resolved on CPython 3.11 (requires-python and CI's interpreter).
    assert PYPROJECT["project"]["requires-python"] == ">=3.11" and sys.version_info[:2] == (3, 11)
    for target in TARGETS:
        runs = " ".join(args for stage in lineage(stages, target) for inst, args in stage.instructions if inst == "RUN")
        assert "install-notebench.sh python3.11" in runs, target
        base = lineage(stages, target)[0].base
        assert base.startswith("python:3.11.") or "python3.11-venv" in runs, f"{target}: where does python3.11 come from?"
    assert "bookworm" in stages["build"].base  # Debian 12's python3 is 3.11


def test_every_image_ends_as_an_unprivileged_user(stages):
    for target in TARGETS:
        user = effective(stages, target, "USER")
        assert user and re.fullmatch(r"\d+(:\d+)?", user), f"{target}: USER {user!r} is not numeric"
        uid, _, gid = user.partition(":")
        assert int(uid) == 1000 and int(gid or 1000) != 0, f"{target} runs as {user}"
        # the last instruction that sets the user is the image's last USER: nothing runs after as root
        last_stage = lineage(stages, target)[-1]
        assert ("USER", user) in last_stage.instructions, f"{target}: its own stage must say USER"
    assert "useradd --uid 1000 --gid 100" in INSTALL_SCRIPT.read_text()


def test_every_pip_install_uses_the_pins(stages):
    commands = [args for stage in stages.values() for inst, args in stage.instructions if inst == "RUN"]
    commands += INSTALL_SCRIPT.read_text().splitlines()
    installs = [c for c in commands if re.search(r"\bpip install\b", c)]
    assert len(installs) >= 2
    for command in installs:
        for part in re.split(r"&&|;", command):
            if re.search(r"\bpip install\b", part):
                assert re.search(r"\s-c \S*constraints\.txt", part), f"pip install without the pins: {part.strip()}"
    # Wheels are built without resolving dependencies: only the installs above choose versions.
    wheels = [c for c in commands if "pip wheel" in c]
    assert wheels and all("--no-deps" in c for c in wheels)


def test_scripts_install_uses_the_same_pins():
    script = (ROOT / "scripts" / "install").read_text()
    installs = [line for line in script.splitlines() if re.search(r"pip install", line) and not line.lstrip().startswith("#")]
    for line in installs:
        if "--upgrade \"pip" in line or "--no-deps" in line:
            continue  # pip itself; the extension built from this checkout
        assert "-c constraints.txt" in line, f"scripts/install without the pins: {line.strip()}"
    assert any('-e ".${extras}"' in line for line in installs)


def test_constraints_cover_every_dependency_within_its_range():
    pins = constraints()
    project = PYPROJECT["project"]
    extension = tomllib.loads((ROOT / "extensions" / "jupyterlab-notebench" / "pyproject.toml").read_text())
    requirements = [*project["dependencies"], *project["optional-dependencies"]["test"],
                    *extension["project"]["dependencies"], *extension["build-system"]["requires"]]
    for text in requirements:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {requirement.name}=={pins[name]}, outside {requirement.specifier}"
        )


def test_constraints_are_what_ci_installed():
    # This venv is the one scripts/install built with them.
    differing = {}
    for name, pinned in constraints().items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = None
        if installed != pinned:
            differing[name] = (pinned, installed)
    assert not differing, f"constraints.txt and the venv differ (pinned, installed): {differing}"


def test_copied_paths_exist(stages):
    for stage in stages.values():
        for inst, args in stage.instructions:
            if inst in ("COPY", "ADD") and "--from=" not in args:
                *sources, _destination = shlex.split(args)
                for source in sources:
                    assert (ROOT / source).exists(), f"{stage.name}: COPY {source}: no such path"


def test_the_wheels_get_every_tracked_source(stages):
    copied = [
        source
        for inst, args in stages["build"].instructions
        if inst == "COPY" and "--from=" not in args
        for source in shlex.split(args)[:-1]
    ]
    # Notebench's packages (pyproject's package-dir) and README.md (its readme)
    for directory in {*PYPROJECT["tool"]["setuptools"]["package-dir"].values(), "README.md", "pyproject.toml"}:
        assert directory in copied, f"{directory} is not copied into the build"
    # The extension: every file git tracks there is under a copied path
    tracked = subprocess.run(
        ["git", "ls-files", "extensions/jupyterlab-notebench"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert tracked
    missing = [f for f in tracked if not any(f == c or f.startswith(c.rstrip("/") + "/") for c in copied)]
    # Only what building never reads: git's and the linters' settings.
    development_only = {".gitignore", ".prettierignore", "eslint.config.mjs"}
    missing = [f for f in missing if f.rpartition("/")[2] not in development_only]
    assert missing == [], f"not in the extension's build: {missing}"


def test_commands_exist(stages):
    scripts = PYPROJECT["project"]["scripts"]
    for target in TARGETS:
        assert exec_form(effective(stages, target, "ENTRYPOINT")) == ["tini", "-g", "--"]
        command = exec_form(effective(stages, target, "CMD"))
        if command[:2] == ["python", "-m"]:
            assert importlib.util.find_spec(command[2]), f"{target}: no module {command[2]}"
        elif command[0] in scripts:
            assert (VENV_BIN / command[0]).exists(), f"{target}: {command[0]} is not installed"
        else:
            assert (VENV_BIN / command[0]).exists(), f"{target}: {command[0]} is not a command of the venv"
    assert "apt-get install -y --no-install-recommends tini" in INSTALL_SCRIPT.read_text()
    # What the chart and the executor run in these images.
    for module in ("notebench.hub.mlflow_service", "notebench.executor.runtime.runner"):
        assert importlib.util.find_spec(module), module
    assert (VENV_BIN / "mlflow").exists()


def test_hub_command_runs_jupyterhub_with_notebench_config(tmp_path):
    """`notebench hub` (the hub image's command) reads the Kubernetes config: with the chart's
    values but no env from the chart it stops at once, naming what is missing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTEBENCH_")}
    env.update(NOTEBENCH_MODE="kubernetes", NOTEBENCH_VALUES=str(ROOT / "helm" / "notebench" / "values.yaml"))
    result = subprocess.run(
        [str(VENV_BIN / "notebench"), "hub"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "NOTEBENCH_HUB_URL is not set" in result.stderr
