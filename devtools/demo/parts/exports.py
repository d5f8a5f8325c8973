"""Exports in the demo: the product export written as CSV and as JSON Lines, page by page from the
product API the sources simulator plays, each file checked to exist afterwards.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import select

from actors.exports.models import (
    Export,
    ExportRun,  # this pipeline's models: imported here only
)
from devtools.demo.part import DemoContext, DemoPart, Failure, Outcome, PartResult, SimulatorUse
from devtools.sample import create_exports

#: The simulator standing in for the product API (and the demo's other sources).
SIMULATOR = "sources"
#: The folder of the demo's directory the files are written to.
OUTPUT = "exports"


class ExportsPart(DemoPart):
    """One product export per format, first run due at once."""

    exports = 0

    def simulator(self) -> SimulatorUse:
        return SimulatorUse(SIMULATOR, (), "the product API")

    def environment(self, ctx: DemoContext) -> dict[str, str]:
        return {
            "BACKLANE_EXPORTS__BASE_URL": ctx.simulator_url(SIMULATOR),
            "BACKLANE_EXPORTS__OUTPUT_DIR": str(ctx.workdir / OUTPUT),
        }

    def seed(self, ctx: DemoContext) -> str:
        shutil.rmtree(ctx.workdir / OUTPUT, ignore_errors=True)  # a previous run's files
        self.exports = len(create_exports(ctx.db, ctx.now))
        return f"{self.exports} product exports (CSV, JSON Lines)"

    def look(self, ctx: DemoContext) -> PartResult:
        with ctx.db.transaction() as session:
            exports = list(session.scalars(select(Export)))
            failed_runs = set(session.scalars(select(ExportRun.export_id).where(ExportRun.outcome == "failed")))
        done = [e.path for e in exports if e.last_success_at is not None]
        failed = [e.path for e in exports if e.last_success_at is None and e.id in failed_runs]
        line = f"{', '.join(done) or 'none'} written" + (f"; failed: {', '.join(failed)}" if failed else "")
        return PartResult((line,), len(done) + len(failed) >= self.exports)

    def outcome(self, ctx: DemoContext) -> Outcome:
        with ctx.db.transaction() as session:
            runs = session.execute(
                select(ExportRun.file_path, ExportRun.rows, ExportRun.pages).where(ExportRun.outcome == "succeeded")
            ).all()
            done = len(list(session.scalars(select(Export.id).where(Export.last_success_at.is_not(None)))))
        lines, problems = [], []
        for file_path, products, pages in runs:
            file = Path(file_path or "")
            lines.append(f"{file} written: {products} products from {pages} pages of the product API")
            if not file.exists():
                problems.append(f"export file {file} missing")
        if len(runs) != done or not runs:
            problems.append("exports not written")
        return Outcome(tuple(lines) or ("none written",), tuple(problems))

    def failures(self, ctx: DemoContext) -> list[Failure]:
        queue = self.queue(self.pipelines[0])
        with ctx.db.transaction() as session:
            rows = session.execute(
                select(ExportRun.export_id, ExportRun.error).where(ExportRun.outcome == "failed")
            ).all()
        return [Failure(queue, f"export {export_id}", reason) for export_id, reason in rows]


PART = ExportsPart
