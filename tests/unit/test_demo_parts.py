"""The demo is driven by the registry: every registered pipeline finds its demo part (or is said
not seeded), registrations of one handler share a part, and the demo's own units (runner, options,
snapshot, rendering, ...) name no pipeline, so adding one edits none of them."""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from backlane.core.pipeline import Pipeline, Purpose
from backlane.core.registry import Registered
from devtools.demo import discovery, rendering
from devtools.demo.infrastructure import start_simulators
from devtools.demo.options import build_parser, parse_options
from devtools.demo.part import DemoPart, Failure, Outcome, PartResult, SimulatorUse, Wait
from devtools.demo.snapshot import Snapshot, Steady
from devtools.stack import SOURCE_ROOT

DEMO_DIR = SOURCE_ROOT / "devtools" / "demo"
PART_NAMES = sorted(p.stem for p in (DEMO_DIR / "parts").glob("*.py") if not p.stem.startswith("_"))


def registered(name: str, module: str = __name__, **fields: Any) -> Registered[Any]:
    """A registration as the registry holds one, its pipeline declared in ``module``, without a broker."""

    def process(ctx: Any, item: Any) -> None:
        """Never called."""

    process.__module__ = module
    pipeline: Pipeline[Any] = Pipeline(name=name, purpose=Purpose.INGESTION, process=process, **fields)
    return Registered(pipeline, process_actor=None)  # type: ignore[arg-type]  # no actor needed to find a part


def test_every_registered_pipeline_has_a_demo_part() -> None:
    """The application as the worker loads it: each pipeline is shown, none is left unseeded."""
    code = (
        "import json; from devtools.demo.discovery import find_parts, load_registered;"
        "f = find_parts(load_registered());"
        "print(json.dumps({'parts': {p.name: list(p.pipelines) for p in f.parts}, 'without': list(f.without_part)}))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=SOURCE_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["without"] == []
    assert sorted(found["parts"]) == PART_NAMES
    assert found["parts"]["staging"] == ["staging_acme", "staging_globex"]


def test_a_pipeline_without_a_demo_part_is_left_out_and_named() -> None:
    found = discovery.find_parts([registered("nosuch_pipeline"), registered("tracks", "actors.tracks")])
    assert [part.name for part in found.parts] == ["tracks"]
    assert found.without_part == ("nosuch_pipeline",)
    assert rendering.not_seeded_lines(found.without_part) == ["nosuch_pipeline: no demo part: not seeded"]


def test_registrations_of_one_handler_share_the_part_of_the_package_declaring_them() -> None:
    acme = registered("staging_acme", "actors.staging", defaults={"max_items": 5}, params={"vendor": "acme"})
    globex = registered("staging_globex", "actors.staging.pipeline", defaults={"max_items": 10})
    found = discovery.find_parts([acme, globex])
    assert [(part.name, part.pipelines) for part in found.parts] == [("staging", ("staging_acme", "staging_globex"))]


def test_a_part_module_without_part_class_is_a_demo_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discovery, "PARTS_PACKAGE", "devtools.demo")  # its modules have no PART
    with pytest.raises(discovery.DemoError, match="has no PART"):
        discovery.find_parts([registered("snapshot")])


def _code_text(path: Path) -> list[str]:
    """Every identifier and string of a module's code, docstrings and comments left out."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    words = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            words.append(node.value)
        elif isinstance(node, ast.Name):
            words.append(node.id)
        elif isinstance(node, ast.Attribute):
            words.append(node.attr)
        elif isinstance(node, ast.alias):
            words.append(node.name)
    return words


@pytest.mark.parametrize("module", sorted(p.name for p in DEMO_DIR.glob("*.py")))
def test_the_demos_own_units_name_no_pipeline(module: str) -> None:
    named = [(name, text) for text in _code_text(DEMO_DIR / module) for name in PART_NAMES if name in text.lower()]
    assert not named, f"devtools/demo/{module} names a pipeline in its code: {named}"


class Vendor(DemoPart):
    """A part with an option of its own and a simulator."""

    count = 0

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--widgets", type=int, default=3)

    def configure(self, args: argparse.Namespace) -> None:
        self.count = args.widgets

    def simulator(self) -> SimulatorUse:
        return SimulatorUse("shared", ("--rate-limit", f"w={self.count}/60"), f"{self.count} widgets")


def test_a_part_adds_its_options_and_takes_their_values() -> None:
    part = Vendor("widgets", [])
    options = parse_options(["--widgets", "7", "--threads", "2"], [part])
    assert (part.count, options.threads) == (7, 2)
    assert "--widgets" in build_parser([part]).format_help()
    assert "(widgets)" in build_parser([part]).description.replace("\n", " ")  # type: ignore[union-attr]
    with pytest.raises(SystemExit) as exit_:
        parse_options(["--threads", "0"], [part])
    assert exit_.value.code == 2


def test_parts_naming_one_simulator_group_share_one_process_with_all_their_arguments() -> None:
    started: list[tuple[str, ...]] = []

    class FakeStack:
        def start_simulator(self, port: int | None, *args: str) -> tuple[None, str]:
            started.append(args)
            return None, f"http://127.0.0.1:{9000 + len(started)}"

    uses = [
        SimulatorUse("shared", ("--rate-limit", "a=1/60"), "a"),
        SimulatorUse("own", ("--failure-rate", "0.2"), "b"),
        SimulatorUse("shared", ("--rate-limit", "c=2/60"), "c"),
    ]
    simulators = start_simulators(FakeStack(), uses)  # type: ignore[arg-type]
    assert [(s.group, s.plays) for s in simulators] == [("shared", ("a", "c")), ("own", ("b",))]
    assert started[0] == ("--rate-limit", "a=1/60", "--rate-limit", "c=2/60", "--seed", "7")
    assert rendering.simulator_line(simulators[0]) == "shared simulator: http://127.0.0.1:9001: a; c"


def test_progress_lines_are_labelled_with_each_parts_name_under_one_time_stamp() -> None:
    snapshot = Snapshot(
        12.3,
        {"alpha": PartResult(("3/4 done",), settled=False), "beta": PartResult(("ok", "more"), settled=True)},
    )
    lines = rendering.progress_lines(snapshot, [Wait("alpha", "1 alpha waits for the next tick")])
    assert lines == [
        "[  12s] alpha    3/4 done",
        "        beta     ok",
        "                 more",
        "        waiting  1 alpha waits for the next tick",
    ]
    assert rendering.progress_lines(snapshot, [])[-1] == ""  # same height for a terminal's redraw
    later = rendering.progress_lines(Snapshot(40.0, snapshot.results), [])
    assert not rendering.changed(later, rendering.progress_lines(snapshot, []))
    assert snapshot.unsettled == ["alpha"] and not snapshot.settled


def test_a_wait_is_said_once_it_holds_for_two_looks() -> None:
    steady = Steady()
    first, second = Wait("a", "a waits"), Wait("b", "b waits")
    assert steady.filter([first]) == []
    assert steady.filter([first, second]) == [first]
    assert steady.filter([second]) == [second]


def test_the_summary_labels_each_line_and_explains_every_failure() -> None:
    assert rendering.outcome_lines("orders", Outcome(("all 3 settled", "second"))) == [
        "orders:  all 3 settled",
        "orders:  second",
    ]
    assert rendering.failure_lines([], ["the broken thing"]) == ["", "no item failed for good."]
    lines = rendering.failure_lines(
        [Failure("q2", "item 1", "x " * 200), Failure("q1", "item 2", None)], ["the broken track", "the bad batch"]
    )
    text = "\n".join(lines)
    assert "2 item(s) failed for good" in text and "no reason recorded" in text
    assert max(len(line) for line in lines) < 200
    assert lines.index("  backlane dead-letters requeue --all --queue q1") < lines.index(
        "  backlane dead-letters requeue --all --queue q2"
    )
    assert lines[-1] == "(The broken track and the bad batch are in the sample data on purpose: neither can succeed.)"


@pytest.mark.parametrize(
    ("items", "said"),
    [
        (["the broken track"], "(The broken track is in the sample data on purpose: it cannot succeed.)"),
        (["a", "b", "c"], "(A, b and c are in the sample data on purpose: none can succeed.)"),
    ],
)
def test_items_failing_on_purpose_are_said_in_one_sentence(items: list[str], said: str) -> None:
    assert rendering.on_purpose_line(items) == said


def test_the_base_part_does_nothing_and_settles() -> None:
    part: DemoPart = DemoPart("quiet", [registered("quiet")])
    hooks: list[Callable[..., Any]] = [part.start, part.nudge, part.failures]
    assert part.first_discover() == ("quiet",)
    assert part.queue("quiet") == "quiet"
    assert all(not hook(None) for hook in hooks)
    assert part.look(None).settled  # type: ignore[arg-type]


def test_every_part_seeds_and_reads_its_pipeline_on_a_migrated_database(tmp_path: Path) -> None:
    """The parts against the real models and the simulator, with no process: each seeds, reads
    its progress (not settled: nothing ran), finds no failure and states its outcome."""
    from datetime import UTC, datetime

    from backlane.db.engine import Database
    from backlane.db.migrate import upgrade
    from devtools.demo.part import DemoContext
    from devtools.simulator import Simulator, SimulatorConfig

    url = f"sqlite:///{tmp_path}/demo.db"
    upgrade(url)
    registrations = [registered(name, f"actors.{name}") for name in PART_NAMES if name != "staging"] + [
        registered(f"staging_{vendor}", "actors.staging", defaults={"max_items": limit}, params={"vendor": vendor})
        for vendor, limit in (("acme", 5), ("globex", 10))
    ]
    found = discovery.find_parts(registrations)
    assert sorted(part.name for part in found.parts) == PART_NAMES and not found.without_part
    parse_options(["--orders", "4"], found.parts)
    db = Database(url)
    with Simulator(config=SimulatorConfig(seed=7)) as simulator:
        uses = [use for part in found.parts if (use := part.simulator()) is not None]
        ctx = DemoContext(
            tmp_path,
            db,
            url,
            tmp_path / "storage",
            "amqp://unused",
            {u.group: simulator.url for u in uses},
            datetime.now(UTC),
        )
        try:
            env = {name: value for part in found.parts for name, value in part.environment(ctx).items()}
            assert all(name.startswith("BACKLANE_") for name in env) and simulator.url in env.values()
            said = rendering.sample_data_line(url, [part.seed(ctx) for part in found.parts])
            assert "4 orders" in said and "9 for acme, 15 for globex" in said
            for part in found.parts:
                result = part.look(ctx)
                assert result.lines and not result.settled, (part.name, result)
                assert part.failures(ctx) == []
                assert part.outcome(ctx).lines, part.name
        finally:
            db.dispose()
