"""Facilitator accounts and API tokens."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import func, select
from werkzeug.security import check_password_hash, generate_password_hash

from ..domain.codes import hash_secret, new_secret
from ..extensions import db
from ..models import ApiToken, Facilitator
from .errors import ServiceError

MIN_PASSWORD = 8


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _clean_email(email: str) -> str:
    email = (email or "").strip().lower()
    if "@" not in email or len(email) > 254 or email.startswith("@") or email.endswith("@"):
        raise ServiceError("invalid_email", "Please give a valid e-mail address.")
    return email


def facilitator_count() -> int:
    return db.session.scalar(select(func.count(Facilitator.id))) or 0


def create_facilitator(email: str, password: str) -> Facilitator:
    email = _clean_email(email)
    if len(password or "") < MIN_PASSWORD:
        raise ServiceError("weak_password", "The password needs at least %(num)s characters.", num=MIN_PASSWORD)
    if db.session.scalar(select(Facilitator).where(Facilitator.email == email)):
        raise ServiceError("exists", "A facilitator with that e-mail already exists.", 409)
    fac = Facilitator(email=email, password_hash=generate_password_hash(password, method="scrypt"),
                      created_at=_utcnow())
    db.session.add(fac)
    db.session.commit()
    return fac


def create_first_facilitator(email: str, password: str) -> Facilitator:
    """Only while no facilitator exists (the one-time setup page)."""
    if facilitator_count() > 0:
        raise ServiceError("setup_done", "The first facilitator already exists; please log in.", 409)
    return create_facilitator(email, password)


def authenticate(email: str, password: str) -> Facilitator | None:
    fac = db.session.scalar(select(Facilitator).where(Facilitator.email == (email or "").strip().lower()))
    if fac is None or not check_password_hash(fac.password_hash, password or ""):
        return None
    return fac


def get_facilitator(facilitator_id: int | None) -> Facilitator | None:
    return db.session.get(Facilitator, facilitator_id) if facilitator_id else None


def find_facilitator(email: str) -> Facilitator:
    fac = db.session.scalar(select(Facilitator).where(Facilitator.email == (email or "").strip().lower()))
    if fac is None:
        raise ServiceError("not_found", "No facilitator with that e-mail.", 404)
    return fac


def create_token(facilitator_id: int, label: str = "") -> tuple[ApiToken, str]:
    """A new API token; the plain token is returned once and never stored."""
    secret = "cafe_" + new_secret(30)
    token = ApiToken(facilitator_id=facilitator_id, token_hash=hash_secret(secret), label=(label or "")[:80],
                     created_at=_utcnow())
    db.session.add(token)
    db.session.commit()
    return token, secret


def revoke_token(facilitator_id: int, token_id: int) -> None:
    token = db.session.get(ApiToken, token_id)
    if token is None or token.facilitator_id != facilitator_id:
        raise ServiceError("not_found", "No such token.", 404)
    token.revoked_at = _utcnow()
    db.session.commit()


def list_tokens(facilitator_id: int) -> list[ApiToken]:
    return list(db.session.scalars(select(ApiToken).where(ApiToken.facilitator_id == facilitator_id)
                                   .order_by(ApiToken.id)))


def facilitator_for_token(secret: str | None) -> Facilitator | None:
    if not secret or len(secret) > 200:
        return None
    token = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_secret(secret)))
    if token is None or token.revoked_at is not None:
        return None
    return db.session.get(Facilitator, token.facilitator_id)
