"""The dashboard as an ASGI app (Starlette): server-rendered pages and POST actions.

:func:`create_app` builds it for ``backlane dashboard`` or for mounting in an operator's own
ASGI app (``Mount("/backlane", app=create_app())``): every link and redirect is relative to
where it is mounted. Pages render with Jinja2 with autoescaping on, so nothing read from a
message, a row or a reason reaches the browser unescaped. Every request passes
:func:`_guard` (HTTP Basic when a password is set); every action is a POST carrying the
CSRF token of the browser's cookie, refused in read-only mode, and done by the same code
as the CLI's (:mod:`backlane.operations.actions`, :mod:`backlane.operations.dead_letters`). A
:class:`~backlane.errors.Problem` an action raises is said on the page it returns to; any other
failure is the error page, one line too (:func:`backlane.problems.explain`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from backlane.errors import Problem
from backlane.operations import dead_letters as admin
from backlane.operations.controls import audited_trigger
from backlane.operations.dashboard import controls_pages, security
from backlane.operations.dashboard.items import STATES, parse_before
from backlane.operations.dashboard.views import Views
from backlane.operations.jobs import operations as jobs
from backlane.operations.jobs import store as job_store

if TYPE_CHECKING:
    from backlane.app import App
    from backlane.settings import DashboardSettings

logger = logging.getLogger("backlane.dashboard")
HERE = Path(__file__).resolve().parent
#: Headers on every answer: no framing, no sniffing, scripts only from the dashboard itself.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

Endpoint = Callable[[Request], Awaitable[Response]]


def create_app(app: App | None = None, settings: DashboardSettings | None = None) -> Starlette:
    """The dashboard over ``app`` (default: :func:`backlane.app.load_app`) with ``settings``
    (default: ``BACKLANE_DASHBOARD__*``)."""
    if app is None:
        from backlane.app import load_app

        app = load_app()
    settings = settings or app.runtime.settings.dashboard
    weak = security.password_problem(settings)
    if weak is not None:
        raise weak  # mounted in another app too: never served with a blank or short password
    dashboard = _Dashboard(app, settings)
    routes = [
        Route("/", dashboard.guard(dashboard.overview)),
        Route("/pipelines/{name}", dashboard.guard(dashboard.pipeline)),
        Route("/dead-letters", dashboard.guard(dashboard.dead_letters)),
        Route("/health", dashboard.guard(dashboard.health)),
        Route("/pipelines/{name}/trigger", dashboard.guard(dashboard.trigger, action=True), methods=["POST"]),
        Route("/dead-letters/requeue", dashboard.guard(dashboard.requeue, action=True), methods=["POST"]),
        Route("/dead-letters/purge", dashboard.guard(dashboard.purge, action=True), methods=["POST"]),
        *controls_pages.routes(dashboard),
        Route("/jobs", dashboard.guard(dashboard.jobs)),
        Route("/jobs/{job_id:int}", dashboard.guard(dashboard.job)),
        Route("/jobs/{job_id:int}/progress", dashboard.guard(dashboard.job_progress)),
        Route("/jobs/{job_id:int}/stop", dashboard.guard(dashboard.job_stop, action=True), methods=["POST"]),
        Route("/jobs/{job_id:int}/resume", dashboard.guard(dashboard.job_resume, action=True), methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    return Starlette(routes=routes, lifespan=dashboard.lifespan)


def _cookie_name(request: Request) -> str:
    return security.SECURE_CSRF_COOKIE if request.url.scheme == "https" else security.CSRF_COOKIE


def _login(request: Request) -> str:
    """What a CSRF token is bound to: the credentials this browser sends ("" without a login)."""
    return request.headers.get("authorization") or ""


class _Dashboard:
    def __init__(self, app: App, settings: DashboardSettings) -> None:
        self.app, self.settings = app, settings
        self.allowed_hosts = settings.allowed_host_names()
        self.views = Views(app, settings)
        # Autoescape on for every template, whatever its name: nothing reaches the page unescaped.
        environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, trim_blocks=True, lstrip_blocks=True
        )
        self.templates = Jinja2Templates(env=environment)

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        """The charts' sampler starts with the server (mounted elsewhere: at the first page) and
        stops with it."""
        self.views.sampler.start()
        try:
            yield
        finally:
            self.views.sampler.stop()

    # -- safety ------------------------------------------------------------------

    def guard(self, endpoint: Endpoint, *, action: bool = False) -> Endpoint:
        """``endpoint`` behind the login (when a password is set) and, for an action, the
        read-only setting and the CSRF check; every answer gets the security headers."""

        async def guarded(request: Request) -> Response:
            started = time.perf_counter()
            self.views.sampler.start()  # once; mounted in another app, no lifespan may have run
            response = await self._checked(request, endpoint, action)
            response.headers.update(SECURITY_HEADERS)
            # The time spent answering, for the browser's developer tools (and the benchmark).
            response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
            return response

        return guarded

    async def _checked(self, request: Request, endpoint: Endpoint, action: bool) -> Response:
        if not security.host_allowed(request.headers.get("host"), self.allowed_hosts):
            # Before the login and before any token: a rebinding page learns nothing.
            return PlainTextResponse(
                "refused: this dashboard is not served under that host name (BACKLANE_DASHBOARD__ALLOWED_HOSTS)\n",
                421,
            )
        if action:  # a POST a page on another site sent: refused before the login is looked at
            why = security.cross_site(
                request.headers.get("host"),
                request.headers.get("origin"),
                request.headers.get("sec-fetch-site"),
                scheme=request.url.scheme,
            )
            if why is not None:
                return PlainTextResponse(f"refused: the request comes from another site ({why})\n", 403)
        password = self.settings.password
        if password is not None and not security.credentials_ok(
            request.headers.get("authorization"), self.settings.user, password.get_secret_value()
        ):
            return PlainTextResponse(
                "login required\n", 401, headers={"WWW-Authenticate": 'Basic realm="backlane", charset="UTF-8"'}
            )
        if action:
            if self.settings.read_only:
                return PlainTextResponse("the dashboard is read-only (BACKLANE_DASHBOARD__READ_ONLY)\n", 403)
            form = await request.form()
            submitted = form.get(security.CSRF_FIELD)
            token = submitted if isinstance(submitted, str) else None
            if not security.csrf_ok(request.cookies.get(_cookie_name(request)), token, _login(request)):
                return PlainTextResponse("refused: missing or wrong CSRF token; reload the page and try again\n", 403)
        try:
            return await endpoint(request)
        except Exception as exc:  # one line on the page, never a traceback
            from backlane.problems import explain

            problem = explain(exc)
            if problem is None:
                logger.exception("dashboard: %s %s failed", request.method, request.url.path)
                line = f"unexpected error ({type(exc).__name__}); the dashboard's log has the details"
            else:
                line = problem.line
            return self._page(request, "missing.html", {"what": line, "title": "error"}, 503)

    def _page(self, request: Request, template: str, context: dict[str, Any], status: int = 200) -> Response:
        cookie = _cookie_name(request)
        given = request.cookies.get(cookie)
        token = given if given is not None and security.token_valid(given, _login(request)) else None
        token = token or security.new_csrf_token(_login(request))
        base = request.scope.get("root_path", "")
        context = {
            "base": base,
            "csrf": token,
            "read_only": self.settings.read_only,
            "refresh_seconds": self.settings.refresh_seconds,
            "notice": security.notice_of(request.query_params.get("notice"), request.query_params.get("sig")),
            "registry_names": [r.name for r in self.app.registry],
            **context,
        }
        response = self.templates.TemplateResponse(request, template, context, status_code=status)
        if request.cookies.get(cookie) != token:
            secure = cookie == security.SECURE_CSRF_COOKIE  # __Host-: Secure, Path=/, no Domain
            path = "/" if secure else base or "/"
            response.set_cookie(cookie, token, httponly=True, samesite="strict", path=path, secure=secure)
        return response

    def _back(self, request: Request, path: str, notice: str) -> Response:
        """Redirect (303) to ``path`` of the dashboard, saying ``notice`` there."""
        base = request.scope.get("root_path", "")
        query = urlencode({"notice": notice, "sig": security.sign_notice(notice)})
        return RedirectResponse(f"{base}{path}?{query}", status_code=303)

    # -- pages -------------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        status = await run_in_threadpool(self.views.overview)
        return self._page(request, "overview.html", {"status": status, "title": "overview"})

    async def pipeline(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in [r.name for r in self.app.registry]:
            # The name is not repeated: no page text comes from the URL.
            return self._page(request, "missing.html", {"what": "no such pipeline", "title": "not found"}, 404)
        query = request.query_params
        # Printable text only, bounded: a NUL is an error on PostgreSQL, not a search.
        search = "".join(c for c in query.get("q", "")[:200] if c.isprintable())
        page = await run_in_threadpool(
            self.views.pipeline,
            name,
            state=query.get("state", ""),
            search=search,
            before=parse_before(query.get("before")),
            page=parse_before(query.get("page")),
        )
        held = await run_in_threadpool(controls_pages.pipeline_controls, self, name)
        context = {"page": page, "title": name, "states": STATES, "q": search, "controls": held}
        return self._page(request, "pipeline.html", context)

    async def dead_letters(self, request: Request) -> Response:
        listing = await run_in_threadpool(self.views.dead_letters)
        return self._page(request, "dead_letters.html", {"listing": listing, "title": "dead letters"})

    async def health(self, request: Request) -> Response:
        health = await run_in_threadpool(self.views.health)
        return self._page(request, "health.html", {"health": health, "title": "health"})

    # -- actions -----------------------------------------------------------------

    async def trigger(self, request: Request) -> Response:
        name = request.path_params["name"]
        form = await request.form()
        target = str(form.get("target") or "") or None
        known = name in [r.name for r in self.app.registry]
        back = f"/pipelines/{name}" if form.get("back") == "pipeline" and known else "/"
        try:
            said = await run_in_threadpool(
                audited_trigger, self.app.registry, self.app.runtime, controls_pages.actor_of(self), name, target
            )
        except Problem as problem:
            said = f"not done: {problem.line}"
        return self._back(request, back, said)

    async def requeue(self, request: Request) -> Response:
        form = await request.form()
        queue = str(form.get("queue") or "")
        ids = {str(v) for v in form.getlist("message_id") if v}
        every = form.get("all") == "1"
        if not queue:  # an action names its target: a missing field never means every queue
            return self._back(request, "/dead-letters", "nothing requeued: name a queue")
        if not every and not ids:
            return self._back(request, "/dead-letters", "nothing requeued: select dead letters first")
        runtime = self.app.runtime
        if every:  # any number of letters: a job on the workers, followed on its own page
            return await self._start_job(request, "requeue", queue)

        def run() -> str:
            queues = admin.select_queues(runtime.broker, queue or None)
            report = admin.requeue(
                runtime.broker,
                runtime.settings.broker.url.get_secret_value(),
                queues,
                lambda letter: every or letter.message_id in ids,
                first_only=len(ids) == 1 and not every,
                timeout=runtime.settings.broker.command_timeout,
            )
            one = next(iter(ids)) if len(ids) == 1 and not every else None
            return report.summary(one)

        try:
            said = await run_in_threadpool(run)
        except Problem as problem:
            said = f"not done: {problem.line}"
        return self._back(request, "/dead-letters", said)

    async def purge(self, request: Request) -> Response:
        form = await request.form()
        queue = str(form.get("queue") or "")
        confirm = form.get("confirm")
        # Every queue at once is its own confirmation, never what a missing field means.
        if not (confirm == "purge" and queue) and not (confirm == "purge-all" and not queue):
            return self._back(request, "/dead-letters", "nothing purged: name a queue and tick the box to confirm")
        return await self._start_job(request, "purge", queue or None)

    # -- bulk jobs (backlane/operations/jobs) -----------------------------------------

    def _actor(self) -> str:
        """Who acts, for the audit trail: the login's user, when there is a login."""
        from backlane.operations import audit

        return audit.dashboard_actor(self.settings.user if self.settings.password is not None else "(no login)")

    async def _start_job(self, request: Request, kind: str, queue: str | None) -> Response:
        """A job of ``kind`` over ``queue``'s letters (None: every queue) handed to the workers;
        the browser goes at once to its page, never waiting for the job."""
        runtime = self.app.runtime

        def start() -> int:
            queues = admin.select_queues(runtime.broker, queue)
            return jobs.start(runtime, self._actor(), kind, {"queue": queues[0] if queue else None}, detach=True)

        try:
            job_id = await run_in_threadpool(start)
        except Problem as problem:
            return self._back(request, "/dead-letters", f"not done: {problem.line}")
        where = queue or "every queue"
        return self._back(request, f"/jobs/{job_id}", f"job {job_id}: {kind} of {where} handed to the workers")

    def _job_view(self, job_id: int) -> job_store.JobView:
        runtime = self.app.runtime
        return job_store.view(job_store.get_job(runtime.database, job_id), runtime.clock.now())

    async def jobs(self, request: Request) -> Response:
        runtime = self.app.runtime

        def read() -> list[job_store.JobView]:
            now = runtime.clock.now()
            return [job_store.view(job, now) for job in job_store.list_jobs(runtime.database, 100)]

        return self._page(request, "jobs.html", {"jobs": await run_in_threadpool(read), "title": "jobs"})

    async def job(self, request: Request) -> Response:
        try:
            shown = await run_in_threadpool(self._job_view, request.path_params["job_id"])
        except Problem:
            return self._page(request, "missing.html", {"what": "no such job", "title": "not found"}, 404)
        active = shown.status in job_store.RUNNABLE
        refresh = self.settings.refresh_seconds
        context = {"job": shown, "title": f"job {shown.id}", "active": active and refresh > 0}
        if active and refresh:
            context["refresh_seconds"] = min(refresh, 1.0)  # a job's page follows it closely
        return self._page(request, "job.html", context)

    async def job_progress(self, request: Request) -> Response:
        """The job as JSON (status, done, total, percent, rate, report), for scripts and pages."""
        try:
            shown = await run_in_threadpool(self._job_view, request.path_params["job_id"])
        except Problem:
            return JSONResponse({"error": "no such job"}, 404)
        return JSONResponse({**shown.as_json(), "progress": shown.progress_line})

    async def job_stop(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        try:
            said = await run_in_threadpool(jobs.stop, self.app.runtime, self._actor(), job_id)
        except Problem as problem:
            said = f"not done: {problem.line}"
        return self._back(request, f"/jobs/{job_id}", said)

    async def job_resume(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        try:
            await run_in_threadpool(lambda: jobs.resume(self.app.runtime, self._actor(), job_id, detach=True))
            said = f"job {job_id} resumed: handed to the workers"
        except Problem as problem:
            said = f"not done: {problem.line}"
        return self._back(request, f"/jobs/{job_id}", said)
