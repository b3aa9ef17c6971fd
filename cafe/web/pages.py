"""HTML pages: setup, login, the facilitator's cafés, dashboard, control view, and the phone."""
from __future__ import annotations

import hmac
import secrets
from functools import wraps
from typing import Any, Callable

from flask import (Blueprint, Flask, Response, abort, current_app, g, redirect, render_template, request,
                   session, url_for)
from flask_babel import get_locale
from flask_babel import gettext as _

from ..domain.codes import format_join_code, normalise_join_code
from ..languages import direction
from ..services import accounts
from ..services.cafes import cafe_for_facilitator, cafes_of, create_cafe, notes_csv
from ..services.cafes import delete_cafe as remove_cafe
from ..services.errors import ServiceError
from ..services.reports import priorities_report
from . import context as ctx
from . import exports
from .i18n import error_message
from .qr import qr_svg
from .strings import js_strings

bp = Blueprint("pages", __name__)

LOGIN_ATTEMPTS_PER_MINUTE = 10


# -- security ---------------------------------------------------------------------------------------
def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


@bp.before_app_request
def _check_csrf() -> None:
    if request.method == "POST" and request.blueprint == "pages":
        sent = request.form.get("csrf_token", "")
        if not sent or not hmac.compare_digest(sent, session.get("csrf", "")):
            abort(400, description=_("The form expired. Please go back, reload the page and try again."))


@bp.before_app_request
def _facilitator_language() -> None:
    """A facilitator switches their own views' language with ``?lang=`` (kept in the session)."""
    choice = request.args.get("lang")
    if choice and not request.path.startswith(("/j/", "/join", "/static/")) \
            and choice in current_app.config["LANGUAGES"]:
        session["language"] = choice


@bp.app_context_processor
def _template_globals() -> dict[str, Any]:
    locale = str(get_locale() or "en")
    return {"csrf_token": csrf_token, "current_facilitator_id": ctx.session_facilitator_id(),
            "js_strings": js_strings, "page_lang": locale,
            "page_dir": direction(locale), "language_list": current_app.config["LANGUAGE_LIST"]}


def install_security_headers(app: Flask) -> None:
    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
            "frame-ancestors 'none'")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        fid = ctx.session_facilitator_id()
        if fid is None or accounts.get_facilitator(fid) is None:
            session.pop("facilitator_id", None)
            return redirect(url_for("pages.login", next=request.path))
        g.facilitator_id = fid
        return view(*args, **kwargs)
    return wrapped


def _own_cafe(cafe_id: int) -> Any:
    try:
        return cafe_for_facilitator(cafe_id, g.facilitator_id)
    except ServiceError:
        abort(404)


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return url_for("pages.home")


# -- accounts ---------------------------------------------------------------------------------------
@bp.get("/")
def home() -> Any:
    if accounts.facilitator_count() == 0:
        return redirect(url_for("pages.setup"))
    fid = ctx.session_facilitator_id()
    if fid is None or accounts.get_facilitator(fid) is None:
        return render_template("welcome.html")
    return render_template("home.html", cafes=cafes_of(fid), format_join_code=format_join_code)


@bp.route("/setup", methods=["GET", "POST"])
def setup() -> Any:
    if accounts.facilitator_count() > 0:
        return redirect(url_for("pages.login"))
    error = None
    if request.method == "POST":
        try:
            fac = accounts.create_first_facilitator(request.form.get("email", ""), request.form.get("password", ""))
        except ServiceError as exc:
            error = error_message(exc)
        else:
            session.clear()
            session["facilitator_id"] = fac.id
            return redirect(url_for("pages.home"))
    return render_template("setup.html", error=error), (400 if error else 200)


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    error = None
    if request.method == "POST":
        limiter = ctx.limiter("logins", LOGIN_ATTEMPTS_PER_MINUTE, 60.0)
        if not limiter.hit(ctx.client_address(), ctx.now()):
            return render_template("login.html", error=_("Too many attempts. Please wait a minute.")), 429
        fac = accounts.authenticate(request.form.get("email", ""), request.form.get("password", ""))
        if fac is None:
            error = _("That e-mail and password do not match.")
        else:
            session.clear()
            session["facilitator_id"] = fac.id
            return redirect(_safe_next(request.args.get("next")))
    return render_template("login.html", error=error), (401 if error else 200)


@bp.post("/logout")
def logout() -> Any:
    session.clear()
    return redirect(url_for("pages.home"))


@bp.route("/account", methods=["GET", "POST"])
@login_required
def account() -> Any:
    new_token = None
    if request.method == "POST":
        _token, new_token = accounts.create_token(g.facilitator_id, request.form.get("label", ""))
    fac = accounts.get_facilitator(g.facilitator_id)
    return render_template("account.html", facilitator=fac, tokens=accounts.list_tokens(g.facilitator_id),
                           new_token=new_token)


@bp.post("/account/tokens/<int:token_id>/revoke")
@login_required
def revoke_token(token_id: int) -> Any:
    try:
        accounts.revoke_token(g.facilitator_id, token_id)
    except ServiceError:
        abort(404)
    return redirect(url_for("pages.account"))


# -- cafés ------------------------------------------------------------------------------------------
@bp.route("/cafes/new", methods=["GET", "POST"])
@login_required
def new_cafe() -> Any:
    error = None
    form: dict[str, Any] = {"rounds": 3, "round_minutes": 20, "seats_per_table": 5, "hosts": True}
    if request.method == "POST":
        form = {k: request.form.get(k, "") for k in ("title", "questions", "rounds", "round_minutes",
                                                      "seats_per_table", "tables")}
        form["hosts"] = request.form.get("hosts") == "on"
        form["question_translations"] = {
            lang: request.form.get(f"questions_{lang}", "") for lang in current_app.config["LANGUAGES"]
            if request.form.get(f"questions_{lang}", "").strip()}
        for lang, text in form["question_translations"].items():
            form[f"questions_{lang}"] = text
        try:
            cafe = create_cafe(g.facilitator_id, form)
        except ServiceError as exc:
            error = error_message(exc)
        else:
            return redirect(url_for("pages.cafe_page", cafe_id=cafe.id))
    return render_template("new_cafe.html", error=error, form=form), (400 if error else 200)


@bp.get("/cafes/<int:cafe_id>")
@login_required
def cafe_page(cafe_id: int) -> Any:
    return render_template("cafe.html", **_cafe_context(_own_cafe(cafe_id)))


def _cafe_context(cafe: Any) -> dict[str, Any]:
    """What every page about one café shows: the café, its join link and its code read aloud."""
    return {"cafe": cafe, "join_url": ctx.join_url(cafe.join_code), "code": format_join_code(cafe.join_code)}


@bp.post("/cafes/<int:cafe_id>/delete")
@login_required
def delete_cafe(cafe_id: int) -> Any:
    cafe = _own_cafe(cafe_id)
    if request.form.get("confirm_title", "").strip() != cafe.title:
        abort(400, description=_("Type the café's title to confirm that everything in it should be deleted."))
    remove_cafe(cafe.id, g.facilitator_id)
    return redirect(url_for("pages.home"))


@bp.get("/cafes/<int:cafe_id>/dashboard")
@login_required
def dashboard(cafe_id: int) -> Any:
    context = _cafe_context(_own_cafe(cafe_id))
    return render_template("dashboard.html", qr=qr_svg(context["join_url"]), **context)


@bp.get("/cafes/<int:cafe_id>/control")
@login_required
def control(cafe_id: int) -> Any:
    return render_template("control.html", **_cafe_context(_own_cafe(cafe_id)))


@bp.get("/cafes/<int:cafe_id>/qr.svg")
@login_required
def qr(cafe_id: int) -> Any:
    cafe = _own_cafe(cafe_id)
    return Response(qr_svg(ctx.join_url(cafe.join_code)), mimetype="image/svg+xml")


def _exported_cafe(cafe_id: int) -> Any:
    """Exports answer the café's facilitator, signed in or with an API token; anyone else gets 401/404."""
    fid = ctx.session_facilitator_id() or ctx.bearer_facilitator_id()
    if fid is None:
        abort(401)
    try:
        return cafe_for_facilitator(cafe_id, fid)
    except ServiceError:
        abort(404)


@bp.get("/cafes/<int:cafe_id>/notes.csv")
def notes_export(cafe_id: int) -> Any:
    cafe = _exported_cafe(cafe_id)
    include_names = request.args.get("names") in ("1", "true", "yes")
    body = notes_csv(cafe, include_names=include_names)
    name = f"cafe-{cafe.id}-notes.csv"
    return Response("\ufeff" + body, mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


EXPORT_TYPES = {"csv": "text/csv", "json": "application/json", "md": "text/markdown",
                "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "html": "text/html"}


@bp.get("/cafes/<int:cafe_id>/priorities.<fmt>")
def priorities_export(cafe_id: int, fmt: str) -> Any:
    """The ranked priorities with every note behind them, for boards, funders and partners."""
    if fmt not in EXPORT_TYPES:
        abort(404)
    cafe = _exported_cafe(cafe_id)
    report = priorities_report(cafe, include_names=request.args.get("names") in ("1", "true", "yes"))
    name = f"cafe-{cafe.id}-priorities.{fmt}"
    if fmt == "html":
        return render_template("report.html", report=report, chart=exports.bar_chart_svg(report))
    body: Any = {"csv": exports.as_csv, "json": exports.as_json, "md": exports.as_markdown,
                 "xlsx": exports.as_xlsx}[fmt](report)
    return Response(body, mimetype=EXPORT_TYPES[fmt],
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


# -- phones -----------------------------------------------------------------------------------------
@bp.get("/join")
def join_form() -> Any:
    code = request.args.get("code")
    if code:
        return redirect(url_for("pages.phone", code=normalise_join_code(code)[:16]))
    return render_template("join_code.html")


@bp.get("/j/<code>")
def phone(code: str) -> Any:
    code = normalise_join_code(code)[:16]
    return render_template("phone.html", code=code, code_display=format_join_code(code),
                           languages=current_app.config["LANGUAGES"])


@bp.get("/healthz")
def healthz() -> Any:
    return {"ok": True}


@bp.app_errorhandler(400)
@bp.app_errorhandler(401)
@bp.app_errorhandler(403)
@bp.app_errorhandler(404)
@bp.app_errorhandler(405)
@bp.app_errorhandler(413)
@bp.app_errorhandler(429)
def _error_page(error: Any) -> Any:
    if request.path.startswith("/api/"):
        return {"ok": False, "error": {"code": error.name.lower().replace(" ", "_"),
                                       "message": error.description}}, error.code
    return render_template("error.html", error=error), error.code
