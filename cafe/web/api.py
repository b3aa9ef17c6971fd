"""The JSON API for scripts (facilitator API token as ``Authorization: Bearer ...``)."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, request, url_for

from ..services.cafes import cafe_for_facilitator, cafe_state, create_cafe
from ..services.errors import ServiceError
from . import context as ctx
from .i18n import error_answer

bp = Blueprint("api", __name__, url_prefix="/api")


def _error(exc: ServiceError) -> tuple[dict[str, Any], int]:
    return error_answer(exc), exc.status


def _caller() -> int:
    fid = ctx.bearer_facilitator_id() or ctx.session_facilitator_id()
    if fid is None:
        raise ServiceError("unauthorized", "Send a facilitator API token as 'Authorization: Bearer ...'.", 401)
    return fid


def _cafe_links(cafe: Any) -> dict[str, Any]:
    return {"id": cafe.id, "join_code": cafe.join_code, "join_url": ctx.join_url(cafe.join_code),
            "dashboard_url": url_for("pages.dashboard", cafe_id=cafe.id, _external=True),
            "control_url": url_for("pages.control", cafe_id=cafe.id, _external=True),
            "notes_csv_url": url_for("pages.notes_export", cafe_id=cafe.id, _external=True)}


@bp.post("/cafes")
def create() -> Any:
    try:
        fid = _caller()
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise ServiceError("invalid", "Send a JSON object with at least a 'title'.")
        cafe = create_cafe(fid, data)
    except ServiceError as exc:
        return _error(exc)
    return _cafe_links(cafe), 201


@bp.get("/cafes/<int:cafe_id>")
def show(cafe_id: int) -> Any:
    try:
        cafe = cafe_for_facilitator(cafe_id, _caller())
    except ServiceError as exc:
        if exc.status == 403:
            exc = ServiceError("not_found", "No such café.", 404)
        return _error(exc)
    return _cafe_links(cafe) | {
        "title": cafe.title, "questions": cafe.questions, "rounds": cafe.rounds,
        "round_minutes": cafe.round_seconds // 60, "seats_per_table": cafe.seats_per_table,
        "tables": cafe.fixed_tables, "hosts": cafe.hosts, "state": cafe_state(cafe, ctx.now())}
