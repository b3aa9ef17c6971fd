"""Refresh every catalog in one go: extract, update, revive returning strings, compile.

Run from the repository root:

    .venv/bin/python cafe/translations/refresh.py

It does what these three commands do (see docs/translating.md):

    pybabel extract -F babel.cfg -k _l --add-comments=TRANSLATORS: -o cafe/translations/messages.pot .
    pybabel update -i cafe/translations/messages.pot -d cafe/translations
    pybabel compile -d cafe/translations --statistics

plus one thing pybabel does not do: when a string comes back into the code (or is added exactly as a
translator prepared it), its translation is taken back from the catalog's obsolete (``#~``) entries instead
of being left empty or given a fuzzy guess, as GNU msgmerge does. Other new strings that look like an
old one get pybabel's fuzzy guess (``#, fuzzy``): a hint for the translator, ignored at run time until a
person checks it and removes the flag.

Standard library and Babel only; it does not import the app.
"""
from __future__ import annotations

import sys
from pathlib import Path

from babel.messages.frontend import CommandLineInterface
from babel.messages.pofile import read_po, write_po

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
POT = HERE / "messages.pot"


def pybabel(*args: str) -> None:
    CommandLineInterface().run(["pybabel", "-q", *args])


def catalogs() -> list[Path]:
    return sorted(HERE.glob("*/LC_MESSAGES/messages.po"))


def revive(po_path: Path) -> int:
    """Move obsolete entries whose msgid is back (untranslated or only guessed) into the catalog."""
    with po_path.open("rb") as f:
        catalog = read_po(f)
    revived = 0
    for key, old in list(catalog.obsolete.items()):
        current = catalog.get(old.id, context=old.context)
        if current is None:
            continue
        strings = current.string if isinstance(current.string, (list, tuple)) else [current.string]
        if (any(strings) and not current.fuzzy) or not old.string:
            continue
        if isinstance(current.id, (list, tuple)) != isinstance(old.id, (list, tuple)):
            continue
        current.string = old.string
        current.flags.discard("fuzzy")
        current.previous_id = []
        current.user_comments = list(dict.fromkeys([*current.user_comments, *old.user_comments]))
        del catalog.obsolete[key]
        revived += 1
    if revived:
        with po_path.open("wb") as f:
            write_po(f, catalog, width=100, sort_by_file=True)
    return revived


def stats(po_path: Path) -> tuple[int, int, int]:
    with po_path.open("rb") as f:
        catalog = read_po(f)
    entries = [m for m in catalog if m.id]
    done = [m for m in entries if not m.fuzzy and all(m.string if isinstance(m.string, (list, tuple))
                                                       else [m.string])]
    fuzzy = [m for m in entries if m.fuzzy]
    return len(done), len(entries), len(fuzzy)


def main() -> int:
    import os
    os.chdir(ROOT)
    pybabel("extract", "-F", "babel.cfg", "-k", "_l", "--add-comments=TRANSLATORS:", "--sort-by-file",
            "--width=100", "--project=cafe", "--copyright-holder=the cafe contributors",
            "-o", str(POT.relative_to(ROOT)), ".")
    pybabel("update", "-i", str(POT.relative_to(ROOT)), "-d", str(HERE.relative_to(ROOT)),
            "--width=100")
    for po in catalogs():
        n = revive(po)
        if n:
            print(f"{po.parent.parent.name}: took back {n} translation(s) from obsolete entries")
    pybabel("compile", "-d", str(HERE.relative_to(ROOT)))
    for po in catalogs():
        done, total, fuzzy = stats(po)
        note = f", {fuzzy} fuzzy (not used until reviewed)" if fuzzy else ""
        print(f"{po.parent.parent.name}: {done}/{total} translated{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
