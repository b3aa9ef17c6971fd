"""The languages the interface speaks, read from ``cafe/translations/languages.json`` when present."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CATALOGS = Path(__file__).resolve().parent / "translations"
RTL = {"ar", "he", "fa", "ur", "ps", "yi", "dv", "ckb"}

DEFAULT = [
    {"code": "en", "name": "English", "status": "complete"},
    {"code": "es", "name": "Español", "status": "complete"},
    {"code": "fr", "name": "Français", "status": "complete"},
    {"code": "rw", "name": "Ikinyarwanda", "status": "draft"},
    {"code": "ny", "name": "Chichewa", "status": "draft"},
    {"code": "st", "name": "Sesotho", "status": "draft"},
]


def available_languages() -> list[dict[str, Any]]:
    """Each language: ``code``, ``name`` (in the language itself) and ``status`` (``complete`` or ``draft``)."""
    listing = CATALOGS / "languages.json"
    entries: list[dict[str, Any]] = DEFAULT
    if listing.exists():
        data = json.loads(listing.read_text(encoding="utf-8"))
        entries = data["languages"] if isinstance(data, dict) else data
    return [e for e in entries if e.get("code") == "en" or (CATALOGS / e["code"]).is_dir() or not listing.exists()]


def direction(code: str) -> str:
    return "rtl" if code.split("-")[0] in RTL else "ltr"
