"""
docs/reliability.md stays true to the tests: every node id it names is an existing test, and
every case of the fault-injection suite (tests/test_faults.py) has its row in table (a), so a
fault added without documenting it fails here.

Node ids are resolved by parsing the test files with ``ast`` (no collection run); the fault
cases are read from the ``parametrize`` marks of tests/test_faults.py, i.e. from what pytest runs.
"""

from __future__ import annotations

import ast
import importlib
import itertools
import re
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "reliability.md"
FAULTS_MODULE = "tests.test_faults"
FAULTS_FILE = "tests/test_faults.py"
#: ``tests/<path>.py::function`` or ``tests/<path>.py::Class::method``.
NODE_ID = re.compile(r"(tests/[\w/]+\.py)::(\w+(?:::\w+)*)")
TABLE_A = "### (a)"
#: The parameters of a fault-matrix case, as named in tests/test_faults.py.
FAULT_ARG, COMPONENT_ARG = "fault", "component"
BACKTICKED = re.compile(r"`([^`]+)`")


# -- the checks, as functions of the doc's text (so that they can be shown to fail) ---------------


def node_ids(text: str) -> list[str]:
    return [f"{path}::{name}" for path, name in NODE_ID.findall(text)]


@cache
def collectable_tests(path: str) -> frozenset[str] | None:
    """The test names pytest collects from a file (``name`` or ``Class::name``); None if it does not exist."""
    file = ROOT / path
    if not file.is_file():
        return None
    tree = ast.parse(file.read_text(), filename=str(file))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            names.update(
                f"{node.name}::{item.name}"
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name.startswith("test")
            )
    return frozenset(names)


def unknown_node_ids(text: str) -> list[str]:
    """Node ids in the text that name no test: a missing file, or no such test function in it."""
    unknown = []
    for node_id in node_ids(text):
        path, _, name = node_id.partition("::")
        names = collectable_tests(path)
        if names is None or name not in names:
            unknown.append(node_id)
    return unknown


def suffixed_node_ids(text: str) -> list[str]:
    """Node ids written with a parametrize suffix: the doc names functions, all cases at once."""
    return re.findall(r"tests/[\w/]+\.py::[\w:]+\[[^\]]*\]", text)


def table_rows(text: str, heading: str) -> list[list[str]]:
    """The body rows of the first table under ``heading``, as lists of cell texts."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    rows = []
    for line in lines[start + 1 :]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    # Drop the header row and the |---| separator.
    return [row for row in rows[2:] if not all(set(cell) <= set("-: ") for cell in row)]


def documented_cases(text: str) -> list[tuple[str, str, str]]:
    """(test function, fault, component) of every row of table (a) that cites a tests/test_faults.py test."""
    cases = []
    for row in table_rows(text, TABLE_A):
        fault_cell, component_cell = BACKTICKED.search(row[0]), BACKTICKED.search(row[1])
        for path, name in NODE_ID.findall(row[-1]):
            if path == FAULTS_FILE and fault_cell and component_cell:
                cases.append((name, fault_cell.group(1), component_cell.group(1)))
    return cases


def _ids(mark: Any) -> list[str]:
    values = list(mark.args[1])
    ids = mark.kwargs.get("ids")
    if ids is not None:
        return [str(i) for i in ids]
    assert all(isinstance(v, str) for v in values), f"give the fault cases string ids: {values}"
    return values


@cache
def matrix_cases() -> frozenset[tuple[str, str, str]]:
    """(test function, fault, component) of every case pytest runs from tests/test_faults.py."""
    module = importlib.import_module(FAULTS_MODULE)
    cases = set()
    for name, func in vars(module).items():
        if not (name.startswith("test") and callable(func)):
            continue
        params = {mark.args[0]: _ids(mark) for mark in getattr(func, "pytestmark", []) if mark.name == "parametrize"}
        if set(params) >= {FAULT_ARG, COMPONENT_ARG}:
            cases.update((name, f, c) for f, c in itertools.product(params[FAULT_ARG], params[COMPONENT_ARG]))
    return frozenset(cases)


def undocumented_and_stale(text: str) -> tuple[list[str], list[str], list[str]]:
    """Fault cases without a row, rows naming no case, and cases with more than one row (as case ids)."""
    rows = documented_cases(text)
    documented, cases = set(rows), matrix_cases()

    def case_id(case: tuple[str, str, str]) -> str:
        return f"{FAULTS_FILE}::{case[0]}[{case[1]}-{case[2]}]"

    missing = sorted(case_id(c) for c in cases - documented)
    stale = sorted(case_id(c) for c in documented - cases)
    repeated = sorted(case_id(c) for c in documented if rows.count(c) > 1)
    return missing, stale, repeated


# -- the doc --------------------------------------------------------------------------------------


def test_every_node_id_in_the_doc_names_an_existing_test() -> None:
    text = DOC.read_text()
    ids = node_ids(text)
    assert len(set(ids)) >= 50, "the doc's tables name the tests that prove each line"
    assert unknown_node_ids(text) == []
    assert suffixed_node_ids(text) == [], "name test functions, without a [case] suffix"


def test_every_fault_matrix_case_has_its_row_in_table_a() -> None:
    cases = matrix_cases()
    # The matrix itself: every fault against every component, plus the submit and timeout cases.
    assert len(cases) >= 66, sorted(cases)
    assert {c for f, _, c in cases if f == "test_fault_matrix"} >= {"hook", "sensor-poke", "trigger", "recognize"}

    missing, stale, repeated = undocumented_and_stale(DOC.read_text())

    assert missing == [], "fault cases without a row in table (a) of docs/reliability.md"
    assert stale == [], "rows of table (a) that name no case of tests/test_faults.py"
    assert repeated == [], "one row per case"


# -- the checks can fail ----------------------------------------------------------------------------


def test_a_wrong_node_id_is_reported() -> None:
    text = DOC.read_text()
    broken = text.replace(
        "tests/test_trigger.py::test_deadline_also_ends_a_wait_through_an_outage",
        "tests/test_trigger.py::test_deadline_also_ends_a_wait_through_an_outrage",
        1,
    )
    broken += (
        "\n`tests/test_nowhere.py::test_x` `tests/test_validation.py::TestValidateJobId::test_nope`"
        " `tests/test_validation.py::TestValidateJobId::test_rejects`"
        " `tests/test_faults.py::test_fault_matrix[5xx-burst-short-hook]`\n"
    )

    assert broken != text
    assert unknown_node_ids(broken) == [
        "tests/test_trigger.py::test_deadline_also_ends_a_wait_through_an_outrage",
        "tests/test_nowhere.py::test_x",
        "tests/test_validation.py::TestValidateJobId::test_nope",
    ]
    assert suffixed_node_ids(broken) == ["tests/test_faults.py::test_fault_matrix[5xx-burst-short-hook]"]


def test_a_missing_extra_or_repeated_row_is_reported() -> None:
    text = DOC.read_text()
    lines = text.splitlines(keepends=True)
    row = next(i for i, line in enumerate(lines) if line.startswith("| `malformed-json`") and "| `trigger` |" in line)
    without = "".join(lines[:row] + lines[row + 1 :])
    renamed = "".join([*lines[:row], lines[row].replace("`malformed-json`", "`malformed-xml`"), *lines[row + 1 :]])
    doubled = "".join([*lines[: row + 1], lines[row], *lines[row + 1 :]])

    assert undocumented_and_stale(without) == (
        ["tests/test_faults.py::test_fault_matrix[malformed-json-trigger]"],
        [],
        [],
    )
    assert undocumented_and_stale(renamed) == (
        ["tests/test_faults.py::test_fault_matrix[malformed-json-trigger]"],
        ["tests/test_faults.py::test_fault_matrix[malformed-xml-trigger]"],
        [],
    )
    assert undocumented_and_stale(doubled)[2] == ["tests/test_faults.py::test_fault_matrix[malformed-json-trigger]"]
