"""The reliability record: every attack and fault the suite tries, with its promise and what
was measured, collected from the tests themselves so docs/RELIABILITY.md cannot drift.

A test joins the record with

    @pytest.mark.reliability(area="Network", attack="what was done", promise="what must hold")
    def test_...(measured: Measured) -> None:
        ...
        measured("answered 403 in 4 ms; nothing stored")

`python -m tests.reliability [pytest arguments]` runs the marked tests (those the arguments
narrow it to: the others keep the outcome the table holds) and rewrites docs/RELIABILITY.md
from their outcomes; `python -m tests.reliability --check` (a unit test runs it) fails when the
table and the marked tests disagree.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "docs" / "RELIABILITY.md"
OUT_ENV = "COLABEL_RELIABILITY_OUT"
Measured = Callable[[str], None]
_MEASURED = pytest.StashKey[list[str]]()


@dataclass
class Row:
    area: str
    attack: str
    promise: str
    test: str
    outcome: str = "not run"
    measured: list[str] = field(default_factory=list)


def row_of(item: pytest.Item) -> Row | None:
    mark = item.get_closest_marker("reliability")
    if mark is None:
        return None
    missing = {"area", "attack", "promise"} - set(mark.kwargs)
    if missing or mark.args:
        raise pytest.UsageError(f"{item.nodeid}: reliability(area=, attack=, promise=) "
                                f"needs {sorted(missing)}")
    # A parametrized test is one row: the cases are its sweep.
    return Row(mark.kwargs["area"], mark.kwargs["attack"], mark.kwargs["promise"],
               item.nodeid.split("[", 1)[0])


@pytest.fixture
def measured(request: pytest.FixtureRequest) -> Measured:
    """Record what a reliability test measured (shown in the table's outcome column)."""
    notes = request.node.stash.setdefault(_MEASURED, [])
    return notes.append


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "reliability(area, attack, promise): a row of docs/RELIABILITY.md")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report: pytest.TestReport = yield
    out = os.environ.get(OUT_ENV)
    row = row_of(item) if out else None
    if row is not None and out and (report.when == "call" or report.failed or report.skipped):
        row.outcome = report.outcome
        row.measured = item.stash.get(_MEASURED, [])
        with open(out, "a", encoding="utf-8") as f:
            f.write(json.dumps(asdict(row)) + "\n")
    return report  # type: ignore[return-value]


def collect() -> list[Row]:
    """The marked tests, without running them."""
    rows: list[Row] = []

    class Collector:
        def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
            rows.extend(r for r in map(row_of, items) if r is not None)

    with contextlib.redirect_stdout(io.StringIO()):  # the list of every test is not news
        code = pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", str(ROOT / "tests")],
                           plugins=[Collector()])
    if code not in (0, 5):
        raise SystemExit(f"collecting the tests failed ({code})")
    return list({r.test: r for r in rows}.values())


def merge(cases: list[Row]) -> Row:
    """The row of a test from the outcomes of its cases (one, or a parametrized sweep)."""
    first = cases[0]
    outcomes = {c.outcome for c in cases}
    outcome = "passed" if outcomes == {"passed"} else "failed" if "failed" in outcomes else "skipped"
    if len(cases) > 1:
        outcome += f" ({sum(c.outcome == 'passed' for c in cases)} of {len(cases)} cases)"
    measured = list(dict.fromkeys(m for c in cases for m in c.measured))
    return Row(first.area, first.attack, first.promise, first.test, outcome, measured[:5])


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(rows: list[Row]) -> str:
    lines = [
        "# Reliability: every attack and fault tried",
        "",
        "Each row is a test in the suite: what it does to a running Colabel (real processes, real",
        "Postgres and Redis, nothing mocked), the promise it holds Colabel to, and what the last",
        "run measured. Regenerate with `make reliability` (it runs these tests and rewrites this",
        "file); `make test` fails when this table and the tests disagree.",
        "",
        "| Area | What was done | Promise | Measured outcome | Test |",
        "|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r.area, r.test)):
        outcome = r.outcome + (": " + "; ".join(r.measured) if r.measured else "")
        lines.append(f"| {_cell(r.area)} | {_cell(r.attack)} | {_cell(r.promise)} | {_cell(outcome)} "
                     f"| `{_cell(r.test)}` |")
    return "\n".join(lines) + "\n"


def parse_rows(text: str) -> dict[str, Row]:
    """test -> its row (the outcome cell whole, as `outcome`), read back from a rendered table."""
    out: dict[str, Row] = {}
    for line in text.splitlines():
        if not line.startswith("| ") or line.startswith("| Area "):
            continue
        cells = [c.strip().replace("\\|", "|") for c in line.strip("|").split(" | ")]
        if len(cells) == 5:
            test = cells[4].strip("`")
            out[test] = Row(cells[0], cells[1], cells[2], test, cells[3])
    return out


def parse(text: str) -> dict[str, tuple[str, str, str]]:
    """test -> (area, attack, promise), read back from a rendered table."""
    return {t: (r.area, r.attack, r.promise) for t, r in parse_rows(text).items()}


def check() -> list[str]:
    """How the table and the marked tests disagree (empty when they agree)."""
    want = {r.test: (r.area, r.attack, r.promise) for r in collect()}
    have = parse(TABLE.read_text(encoding="utf-8")) if TABLE.exists() else {}
    problems = [f"not in the table: {t}" for t in sorted(want.keys() - have.keys())]
    problems += [f"in the table but no such test: {t}" for t in sorted(have.keys() - want.keys())]
    problems += [f"the table says otherwise: {t}" for t in sorted(want.keys() & have.keys())
                 if want[t] != have[t]]
    return problems


def main(argv: list[str]) -> int:
    if argv[1:] == ["--check"]:
        problems = check()
        for p in problems:
            print(p, file=sys.stderr)
        if problems:
            print("run `make reliability` to regenerate docs/RELIABILITY.md", file=sys.stderr)
        return 1 if problems else 0
    out = ROOT / ".reliability.jsonl"
    out.unlink(missing_ok=True)
    env = {**os.environ, OUT_ENV: str(out)}
    code = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            "-m", "reliability", *argv[1:], str(ROOT / "tests")], env=env, cwd=ROOT)
    seen: dict[str, list[Row]] = {}
    if out.exists():
        for line in out.read_text(encoding="utf-8").splitlines():
            data: dict[str, Any] = json.loads(line)
            seen.setdefault(data["test"], []).append(Row(**data))
        out.unlink()
    # Tests not run this time (a -k or a path narrowed the run) keep their last outcome.
    last = parse_rows(TABLE.read_text(encoding="utf-8")) if TABLE.exists() else {}
    rows = [merge(seen[r.test]) if r.test in seen
            else replace(r, outcome=last[r.test].outcome) if r.test in last else r
            for r in collect()]
    TABLE.write_text(render(rows), encoding="utf-8")
    print(f"wrote {TABLE.relative_to(ROOT)}: {len(rows)} rows, "
          f"{sum(r.outcome.startswith('passed') for r in rows)} passed")
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
