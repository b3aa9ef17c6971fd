"""The translation catalogs: they load, keep every placeholder, and say honestly how complete they are.

- every catalog under cafe/translations parses, passes Babel's checks, and its committed .mo matches its .po;
- the template (messages.pot) is up to date with the code, so "complete" means complete;
- a translated string keeps exactly the placeholders of its msgid (``%(n)s`` stays ``%(n)s``);
- the catalogs marked complete in languages.json (es, fr) have no empty or fuzzy entry;
- every catalog (complete, reviewed or draft) translates every string the browser scripts use
  (``js_strings()``), and Flask-Babel serves those translations;
- drafts (rw, ny, st) say so in their header and Language-Team; reviewed and complete catalogs do not;
- languages.json lists exactly the catalogs there are, and the app offers exactly those languages.

When one fails after you changed strings: run ``.venv/bin/python cafe/translations/refresh.py`` and translate
what it reports (docs/translating.md).
"""
from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any, Iterator

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.frontend import CommandLineInterface
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[2]
TRANSLATIONS = ROOT / "cafe" / "translations"
POT = TRANSLATIONS / "messages.pot"
LISTING: list[dict[str, Any]] = json.loads((TRANSLATIONS / "languages.json").read_text(encoding="utf-8"))["languages"]
CATALOGS = sorted(p.parent.parent.name for p in TRANSLATIONS.glob("*/LC_MESSAGES/messages.po"))
COMPLETE = [e["code"] for e in LISTING if e["status"] == "complete" and e["code"] != "en"]
DRAFTS = [e["code"] for e in LISTING if e["status"] == "draft"]
REVIEWED = [e["code"] for e in LISTING if e["status"] == "reviewed"]
STATUSES = ("complete", "reviewed", "draft")
REFRESH = "run `.venv/bin/python cafe/translations/refresh.py` (docs/translating.md)"

# %(name)s style (what the code uses), bare %s/%d, and the %% escape.
PLACEHOLDER = re.compile(r"%\([A-Za-z_][A-Za-z0-9_]*\)[-#0 +]*\d*(?:\.\d+)?[sdifrxXeEgGc]|%[-#0 +]*\d*(?:\.\d+)?[sdifr]")
ESCAPE = "%%"


def po(code: str) -> Path:
    return TRANSLATIONS / code / "LC_MESSAGES" / "messages.po"


def load(code: str) -> Catalog:
    with po(code).open("rb") as f:
        return read_po(f, locale=code)


def forms(message: Message) -> list[str]:
    return list(message.string) if isinstance(message.string, (list, tuple)) else [message.string]


def is_translated(message: Message) -> bool:
    return not message.fuzzy and all(forms(message))


def placeholders(text: str) -> list[str]:
    return sorted(PLACEHOLDER.findall(text.replace(ESCAPE, "")))


def stray_percent(text: str) -> bool:
    return "%" in PLACEHOLDER.sub("", text.replace(ESCAPE, ""))


def entries(catalog: Catalog) -> Iterator[Message]:
    return (m for m in catalog if m.id)


def describe(message: Message) -> str:
    where = ", ".join(f"{path}:{line}" for path, line in message.locations[:2])
    return f"{message.id!r} ({where})"


# -- the catalogs load --------------------------------------------------------------------------------
def test_there_are_catalogs() -> None:
    assert CATALOGS, "no catalog under cafe/translations/*/LC_MESSAGES/"


@pytest.mark.parametrize("code", CATALOGS)
def test_catalog_parses_and_passes_babel_checks(code: str) -> None:
    catalog = load(code)
    assert str(catalog.locale) == code
    problems = [f"{describe(m)}: {'; '.join(map(str, errors))}" for m, errors in catalog.check()]
    assert not problems, f"{code}: " + "\n".join(problems)


@pytest.mark.parametrize("code", CATALOGS)
def test_compiled_catalog_matches_the_po(code: str) -> None:
    catalog = load(code)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)                        # it compiles
    mo_path = po(code).with_suffix(".mo")
    assert mo_path.exists(), f"{code}: no messages.mo; {REFRESH}"
    with mo_path.open("rb") as f:
        committed = read_mo(f)
    buffer.seek(0)
    fresh = read_mo(buffer)

    def table(catalog: Catalog) -> dict[Any, list[str]]:
        return {m.id if isinstance(m.id, str) else tuple(m.id): forms(m) for m in entries(catalog)}

    expected, actual = table(fresh), table(committed)
    assert actual == expected, f"{code}: messages.mo is older than messages.po; {REFRESH}"


def test_template_is_up_to_date_with_the_code(tmp_path: Path) -> None:
    fresh = tmp_path / "messages.pot"
    CommandLineInterface().run(["pybabel", "-q", "extract", "-F", str(ROOT / "babel.cfg"), "-k", "_l",
                                "-o", str(fresh), str(ROOT)])
    with fresh.open("rb") as f:
        wanted = {m.id if isinstance(m.id, str) else tuple(m.id) for m in read_po(f) if m.id}
    with POT.open("rb") as f:
        have = {m.id if isinstance(m.id, str) else tuple(m.id) for m in read_po(f) if m.id}
    assert not wanted - have, f"strings missing from messages.pot: {sorted(map(str, wanted - have))}; {REFRESH}"
    assert not have - wanted, f"strings no longer in the code: {sorted(map(str, have - wanted))}; {REFRESH}"


@pytest.mark.parametrize("code", CATALOGS)
def test_catalog_follows_the_template(code: str) -> None:
    with POT.open("rb") as f:
        template = {m.id if isinstance(m.id, str) else tuple(m.id) for m in read_po(f) if m.id}
    have = {m.id if isinstance(m.id, str) else tuple(m.id) for m in entries(load(code))}
    assert have == template, f"{code}: catalog not updated from messages.pot; {REFRESH}"


# -- placeholders survive translation ---------------------------------------------------------------
@pytest.mark.parametrize("code", CATALOGS)
def test_placeholders_are_kept_exactly(code: str) -> None:
    catalog = load(code)
    plural_count = catalog.num_plurals
    problems = []
    for message in entries(catalog):
        if message.fuzzy:       # pybabel's guess: not used, nor checked, until a person removes the flag
            continue
        if isinstance(message.id, (list, tuple)):
            singular, plural = message.id[0], message.id[1]
            sources = [singular if i == 0 and plural_count > 1 else plural for i in range(len(forms(message)))]
        else:
            sources = [message.id]
        for source, text in zip(sources, forms(message)):
            if not text:
                continue
            if placeholders(text) != placeholders(source):
                problems.append(f"{describe(message)}: {placeholders(source)} became {placeholders(text)} in {text!r}")
            elif stray_percent(text) and not stray_percent(source):
                problems.append(f"{describe(message)}: a lone % in {text!r} (write %% for a percent sign)")
            else:
                names = re.findall(r"%\((\w+)\)", source)
                if names:
                    try:
                        text % {name: 1 for name in names}
                    except (KeyError, ValueError, TypeError) as exc:
                        problems.append(f"{describe(message)}: {text!r} cannot be formatted ({exc})")
    assert not problems, f"{code}:\n" + "\n".join(problems)


# -- completeness ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("code", COMPLETE)
def test_complete_catalogs_translate_everything(code: str) -> None:
    catalog = load(code)
    missing = [describe(m) for m in entries(catalog) if not is_translated(m)]
    assert not missing, (f"{code} is marked complete but {len(missing)} entries are empty or fuzzy "
                         f"(translate them, or mark the language 'draft' in languages.json):\n" + "\n".join(missing))


@pytest.fixture(scope="module")
def app() -> Iterator[Any]:
    from cafe import create_app
    from cafe.config import TestConfig

    application = create_app(TestConfig(database_url="sqlite://"))
    yield application
    application.extensions["cafe.committer"].stop()
    from cafe.extensions import db
    with application.app_context():
        db.engine.dispose()


def _js_strings(app: Any, code: str) -> dict[str, str]:
    from flask_babel import force_locale

    from cafe.web.strings import js_strings
    with app.test_request_context("/"), force_locale(code):
        return js_strings()


@pytest.mark.parametrize("code", sorted(set(COMPLETE) | set(REVIEWED) | set(DRAFTS)))
def test_every_browser_string_is_translated_and_served(app: Any, code: str) -> None:
    english = _js_strings(app, "en")
    served = _js_strings(app, code)
    catalog = load(code)
    missing, not_served = [], []
    for key, msgid in english.items():
        message = catalog.get(msgid)
        if message is None or not is_translated(message):
            missing.append(f"{key!r} (msgid {msgid!r})")
        elif served[key] != forms(message)[0]:
            not_served.append(f"{key!r}: served {served[key]!r}, catalog has {forms(message)[0]!r}")
    assert not missing, f"{code}: js_strings() entries without a translation:\n" + "\n".join(missing)
    assert not not_served, f"{code}: Flask-Babel does not serve the catalog ({REFRESH}):\n" + "\n".join(not_served)


# -- drafts are marked as drafts, and languages.json tells the truth ---------------------------------
@pytest.mark.parametrize("code", DRAFTS)
def test_drafts_are_marked_as_awaiting_native_review(code: str) -> None:
    catalog = load(code)
    assert "DRAFT" in catalog.header_comment and "native" in catalog.header_comment, \
        f"{code}: the header comment must say it is a draft awaiting review by native speakers"
    assert "DRAFT" in (catalog.language_team or ""), f"{code}: Language-Team must say DRAFT"


@pytest.mark.parametrize("code", sorted(set(COMPLETE) | set(REVIEWED)))
def test_reviewed_catalogs_are_not_marked_as_drafts(code: str) -> None:
    catalog = load(code)
    assert "DRAFT" not in catalog.header_comment and "DRAFT" not in (catalog.language_team or ""), \
        f"{code} is reviewed in languages.json but its .po still says DRAFT"


def test_languages_json_matches_the_catalogs() -> None:
    codes = [e["code"] for e in LISTING]
    assert len(codes) == len(set(codes)), "a language is listed twice"
    assert "en" in codes, "English (the source language) must be listed"
    for entry in LISTING:
        assert set(entry) >= {"code", "name", "status"}, entry
        assert entry["status"] in STATUSES, entry
        assert entry["name"].strip(), entry
    assert sorted(c for c in codes if c != "en") == CATALOGS, \
        "languages.json and the directories under cafe/translations disagree"


def test_the_app_offers_the_listed_languages(app: Any) -> None:
    assert app.config["LANGUAGES"] == [e["code"] for e in LISTING]


JS_CALL = re.compile(r"""\b(?:C|Cafe)\.(?:t|plural)\(\s*(['"])((?:\\.|(?!\1).)*)\1(?:\s*,\s*(['"])((?:\\.|(?!\3).)*)\3)?""")


def test_every_string_the_scripts_ask_for_is_in_js_strings(app: Any) -> None:
    """A key used in static/js but missing from js_strings() would show in English in every language."""
    keys = set(_js_strings(app, "en"))
    used: dict[str, str] = {}
    for path in sorted((ROOT / "static" / "js").glob("*.js")):
        for match in JS_CALL.finditer(path.read_text(encoding="utf-8")):
            for key in (match.group(2), match.group(4)):
                if key and not key.endswith("_"):       # 'shape_' + name: built at run time
                    used.setdefault(key.replace("\\'", "'").replace('\\"', '"'), path.name)
    missing = sorted(f"{key!r} ({where})" for key, where in used.items() if key not in keys)
    assert not missing, "keys the scripts use that js_strings() lacks:\n" + "\n".join(missing)
