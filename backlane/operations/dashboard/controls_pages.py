"""The dashboard's controls: pause and resume, runtime settings, cancel and reopen, the audit
trail and a part's history (a catalog section's refresh runs).

Every action is a POST through the dashboard's guard (login, CSRF token, Origin, read-only)
and calls the same code as the CLI (:mod:`backlane.operations.controls`), as the dashboard's
user (``dashboard:<user>`` in the audit trail); each returns to the page it came from with
the one line it said. Nothing here holds a request open for long: every action is a few
statements (a larger cancel is a bulk job).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from backlane.errors import Problem
from backlane.operations import audit, controls
from backlane.operations.actions import require_schema

if TYPE_CHECKING:
    from backlane.operations.dashboard.web import _Dashboard

#: Longest text taken from a form field.
MAX_FIELD = 500
#: Actions per audit page.
AUDIT_PAGE = 50


def _text(value: Any, limit: int = MAX_FIELD) -> str:
    """A form value as printable text, bounded (a NUL is an error on PostgreSQL, not a value)."""
    return "".join(c for c in str(value or "")[:limit] if c.isprintable()).strip()


def actor_of(dashboard: _Dashboard) -> str:
    """Who acts from the dashboard: its login's user, or ``local`` when it serves loopback without one."""
    settings = dashboard.settings
    return audit.dashboard_actor(settings.user if settings.password is not None else "local")


def routes(dashboard: _Dashboard) -> list[Route]:
    pages = _Pages(dashboard)
    guard = dashboard.guard
    return [
        Route("/audit", guard(pages.audit)),
        Route("/pipelines/{name}/settings", guard(pages.settings)),
        Route("/pipelines/{name}/parts/{part}", guard(pages.part)),
        Route("/pipelines/{name}/pause", guard(pages.pause, action=True), methods=["POST"]),
        Route("/pipelines/{name}/resume", guard(pages.resume, action=True), methods=["POST"]),
        Route("/pipelines/{name}/settings/set", guard(pages.set_setting, action=True), methods=["POST"]),
        Route("/pipelines/{name}/settings/unset", guard(pages.unset_setting, action=True), methods=["POST"]),
        Route("/pipelines/{name}/cancel", guard(pages.cancel, action=True), methods=["POST"]),
        Route("/pipelines/{name}/reopen", guard(pages.reopen, action=True), methods=["POST"]),
    ]


def pipeline_controls(dashboard: _Dashboard, name: str) -> dict[str, Any]:
    """What the pipeline page shows of its controls: its pauses, whether its items can be
    cancelled, its parts. Read in the request's worker thread."""
    reg = dashboard.app.registry.get(name)
    try:
        views = {(v.pause.pipeline, v.pause.part): v for v in controls.pauses(dashboard.app.runtime)}
    except Exception:  # the database away or not migrated: the page says so elsewhere
        views = {}
    mine = {part: view for (pipeline, part), view in views.items() if pipeline == name}
    return {
        "paused": mine.get(""),
        "inbox_paused": mine.get("@inbox"),
        "has_inbox": reg.pipeline.inbox is not None,
        "paused_parts": {part: view for part, view in mine.items() if part not in ("", "@inbox")},
        "parts": controls.parts_of(reg),
        "can_cancel": reg.pipeline.cancel is not None,
        "can_reopen": reg.pipeline.uncancel is not None,
    }


class _Pages:
    def __init__(self, dashboard: _Dashboard) -> None:
        self.dashboard = dashboard
        self.app = dashboard.app

    def _known(self, request: Request) -> str | None:
        name = request.path_params["name"]
        return name if name in [r.name for r in self.app.registry] else None

    def _missing(self, request: Request) -> Response:
        return self.dashboard._page(request, "missing.html", {"what": "no such pipeline", "title": "not found"}, 404)

    async def _act(self, request: Request, back: str, work: Any) -> Response:
        try:
            said = await run_in_threadpool(work)
        except Problem as problem:
            said = f"not done: {problem.line}"
        return self.dashboard._back(request, back, said)

    # -- pages -------------------------------------------------------------------

    async def audit(self, request: Request) -> Response:
        query = request.query_params
        search = _text(query.get("q"), 200)
        page_number = int(query["page"]) if query.get("page", "").isdigit() and len(query["page"]) < 7 else 0

        def read() -> Any:
            require_schema(self.app.runtime)
            return audit.events(self.app.runtime.database, limit=AUDIT_PAGE, page=page_number, search=search)

        found = await run_in_threadpool(read)
        more = (page_number + 1) * AUDIT_PAGE < found.total
        context = {"title": "audit", "trail": found, "q": search, "page_number": page_number, "more": more}
        return self.dashboard._page(request, "audit.html", context)

    async def settings(self, request: Request) -> Response:
        name = self._known(request)
        if name is None:
            return self._missing(request)

        def read() -> Any:
            require_schema(self.app.runtime)
            return controls.settings_of(self.app.registry, self.app.runtime, name)

        rows = await run_in_threadpool(read)
        context = {"title": f"{name} settings", "name": name, "rows": rows}
        return self.dashboard._page(request, "settings.html", context)

    async def part(self, request: Request) -> Response:
        name = self._known(request)
        if name is None:
            return self._missing(request)
        part = request.path_params["part"]
        reg = self.app.registry.get(name)
        if part not in controls.parts_of(reg):
            return self.dashboard._page(request, "missing.html", {"what": "no such part", "title": "not found"}, 404)

        def read() -> dict[str, Any]:
            require_schema(self.app.runtime)
            history = reg.pipeline.history
            runs = list(history(reg.context(), part, 100)) if history is not None else []
            return {**pipeline_controls(self.dashboard, name), "runs": runs}

        found = await run_in_threadpool(read)
        context = {"title": f"{name} {part}", "name": name, "part": part, **found}
        return self.dashboard._page(request, "part.html", context)

    # -- actions -----------------------------------------------------------------

    def _back_to(self, name: str, form: Any) -> str:
        part = _text(form.get("part"), 200)
        if form.get("back") == "part" and part:
            return f"/pipelines/{name}/parts/{part}"
        if form.get("back") == "settings":
            return f"/pipelines/{name}/settings"
        return f"/pipelines/{name}"

    async def pause(self, request: Request) -> Response:
        return await self._pause_or_resume(request, pausing=True)

    async def resume(self, request: Request) -> Response:
        return await self._pause_or_resume(request, pausing=False)

    async def _pause_or_resume(self, request: Request, *, pausing: bool) -> Response:
        name = self._known(request)
        if name is None:
            return self._missing(request)
        form = await request.form()
        part = _text(form.get("part"), 200) or None
        inbox = form.get("inbox") == "1"
        reason = _text(form.get("reason"))
        actor = actor_of(self.dashboard)
        runtime, registry = self.app.runtime, self.app.registry

        def work() -> str:
            if pausing:
                return controls.pause(registry, runtime, actor, name, part, inbox=inbox, reason=reason)
            return controls.resume(registry, runtime, actor, name, part, inbox=inbox)

        return await self._act(request, self._back_to(name, form), work)

    async def set_setting(self, request: Request) -> Response:
        name = self._known(request)
        if name is None:
            return self._missing(request)
        form = await request.form()
        key, value = _text(form.get("key"), 200), _text(form.get("value"))
        actor = actor_of(self.dashboard)

        def work() -> str:
            return controls.set_setting(self.app.registry, self.app.runtime, actor, name, key, value)

        return await self._act(request, f"/pipelines/{name}/settings", work)

    async def unset_setting(self, request: Request) -> Response:
        name = self._known(request)
        if name is None:
            return self._missing(request)
        form = await request.form()
        key = _text(form.get("key"), 200)
        actor = actor_of(self.dashboard)

        def work() -> str:
            return controls.unset_setting(self.app.registry, self.app.runtime, actor, name, key)

        return await self._act(request, f"/pipelines/{name}/settings", work)

    async def cancel(self, request: Request) -> Response:
        name = self._known(request)
        if name is None:
            return self._missing(request)
        form = await request.form()
        ids = [part for part in _text(form.get("ids"), 20_000).replace(",", " ").split() if part]
        search, reason = _text(form.get("search"), 200), _text(form.get("reason"))
        actor = actor_of(self.dashboard)

        registry, runtime = self.app.registry, self.app.runtime
        table = registry.get(name).pipeline.table

        def large() -> bool:
            if ids or not search or table is None:
                return False
            return table.cancellable_count(registry.get(name).context(), search) > controls.MAX_CANCEL_AT_ONCE

        is_large: bool = bool(reason) and await run_in_threadpool(large)
        if is_large:  # any number of items: a bulk job on the workers
            try:
                job_id = await run_in_threadpool(
                    lambda: controls.cancel_job(
                        registry, runtime, actor, name, search=search, reason=reason, detach=True
                    )
                )
            except Problem as problem:
                return self.dashboard._back(request, f"/pipelines/{name}", f"not done: {problem.line}")
            return self.dashboard._back(request, f"/jobs/{job_id}", f"job {job_id}: cancelling every match")

        def work() -> str:
            return controls.cancel(registry, runtime, actor, name, ids=ids[:1000], search=search, reason=reason)

        return await self._act(request, f"/pipelines/{name}", work)

    async def reopen(self, request: Request) -> Response:
        name = self._known(request)
        if name is None:
            return self._missing(request)
        form = await request.form()
        ids = [part for part in _text(form.get("ids"), 20_000).replace(",", " ").split() if part]
        actor = actor_of(self.dashboard)

        def work() -> str:
            return controls.reopen(self.app.registry, self.app.runtime, actor, name, ids[:1000])

        return await self._act(request, f"/pipelines/{name}", work)
