"""The house rules (DESIGN.md), read from the source: which package may import which, and that each says so.

Every ``import``/``from`` of an ``autopilot_*`` package in ``src/`` is parsed (ast, so docstrings and comments
do not count) and checked against the allowed layering below, and against the package's ``package.xml``
(an import of a sibling package that is not declared as a dependency breaks a colcon build of that package).
"""

from __future__ import annotations

import ast
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / 'src'

#: Package -> the autopilot packages it may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    'autopilot_core': {'autopilot_msgs'},
    'autopilot_runtime_py': set(),
    'autopilot_cli': {'autopilot_core', 'autopilot_runtime_py', 'autopilot_msgs'},
    'autopilot_launch': {'autopilot_cli', 'autopilot_core'},
    'autopilot_tasks': {'autopilot_cli'},
    'autopilot_hardware': {'autopilot_core', 'autopilot_cli', 'autopilot_msgs'},
    # hardware: only `rig`, which composes the gpio and sound nodes with the pilot in one process
    'autopilot_pilot': {'autopilot_core', 'autopilot_tasks', 'autopilot_hardware', 'autopilot_msgs', 'autopilot_runtime_py'},
    'autopilot_terminal': {'autopilot_core', 'autopilot_runtime_py', 'autopilot_cli', 'autopilot_tasks',
                           'autopilot_msgs'},
    # the window: a client of the terminal over ROS 2, never of its code (one writer per subject file); the task
    # registry for declared plots and the protocol editor's live check, as the pilots run them
    'autopilot_gui': {'autopilot_core', 'autopilot_cli', 'autopilot_tasks', 'autopilot_msgs'},
    # host setup: the gpio node's device rules (one place for them), never a node
    'autopilot_setup': {'autopilot_cli', 'autopilot_core', 'autopilot_hardware'},
}


def imported_packages(path: Path) -> set[str]:
    """Top-level ``autopilot_*`` packages a module imports (at any depth of its code)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        found.update(n.split('.')[0] for n in names if n.startswith('autopilot_'))
    return found


def declared(package: str) -> set[str]:
    root = ET.parse(SRC / package / 'package.xml').getroot()
    return {e.text or '' for e in root if e.tag in ('depend', 'exec_depend')}


def test_every_ament_python_package_is_listed() -> None:
    python_packages = {p.parent.name for p in SRC.glob('*/setup.py')}
    assert python_packages == set(ALLOWED)


@pytest.mark.parametrize('package', sorted(ALLOWED))
def test_imports_follow_the_layering_and_are_declared(package: str) -> None:
    wrong, undeclared = [], []
    deps = declared(package)
    for path in sorted((SRC / package / package).rglob('*.py')):
        for imported in imported_packages(path) - {package}:
            where = f'{path.relative_to(SRC)} imports {imported}'
            if imported not in ALLOWED[package]:
                wrong.append(where)
            elif imported not in deps:
                undeclared.append(where)
    assert not wrong, f'{package} may import only {sorted(ALLOWED[package])}:\n' + '\n'.join(wrong)
    assert not undeclared, f'add these to {package}/package.xml:\n' + '\n'.join(undeclared)


def test_task_files_import_only_the_task_api() -> None:
    tasks = SRC / 'autopilot_tasks' / 'autopilot_tasks' / 'tasks'
    for path in sorted(tasks.glob('*.py')):
        modules = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith('autopilot_'):
                modules.add(node.module)
            elif isinstance(node, ast.Import):
                modules.update(a.name for a in node.names if a.name.startswith('autopilot_'))
        # The task API, and another shipped task a task extends (psychometric 2AFC is 2AFC with graded tones).
        siblings = {f'autopilot_tasks.tasks.{p.stem}' for p in tasks.glob('*.py') if p != path}
        assert modules <= {'autopilot_tasks.task', *siblings}, f'{path.name} imports {sorted(modules)}'
