"""The strings the browser scripts show, translated on the server (one catalog for everything)."""
from __future__ import annotations

from flask_babel import gettext as _

LANGUAGE_NAMES = {"en": "English", "es": "Español", "fr": "Français", "rw": "Kinyarwanda", "ny": "Chichewa",
                  "st": "Sesotho"}


def js_strings() -> dict[str, str]:
    return {
        "Connected": _("Connected"),
        "Offline: your notes are kept and sent when the connection returns":
            _("Offline: your notes are kept and sent when the connection returns"),
        "Could not join. Please try again.": _("Could not join. Please try again."),
        "No connection yet. Please wait a moment and try again.":
            _("No connection yet. Please wait a moment and try again."),
        "You are in. The facilitator will start soon.": _("You are in. The facilitator will start soon."),
        "You will get a table when the next round starts.": _("You will get a table when the next round starts."),
        "You have left. Thank you! Scan the code again to come back.":
            _("You have left. Thank you! Scan the code again to come back."),
        "Reconnecting…": _("Reconnecting…"),
        "Go to table %(n)s": _("Go to table %(n)s"),
        "Table %(n)s": _("Table %(n)s"),
        "You are the host of table %(n)s: stay here, welcome newcomers, and share what was said before.":
            _("You are the host of table %(n)s: stay here, welcome newcomers, and share what was said before."),
        "Round %(n)s": _("Round %(n)s"),
        "Round %(n)s of %(total)s": _("Round %(n)s of %(total)s"),
        "Round %(n)s is over": _("Round %(n)s is over"),
        "Waiting to start": _("Waiting to start"),
        "The café has ended": _("The café has ended"),
        "Time is up. The round is over.": _("Time is up. The round is over."),
        "paused": _("paused"),
        "saved": _("saved"),
        "waiting to send": _("waiting to send"),
        "Edit": _("Edit"),
        "Delete": _("Delete"),
        "Edit your note": _("Edit your note"),
        "Delete this note?": _("Delete this note?"),
        "Your note was:": _("Your note was:"),
        "%(n)s characters left": _("%(n)s characters left"),
        "Leave the café? Your notes stay.": _("Leave the café? Your notes stay."),
        "less than a minute left": _("less than a minute left"),
        "%(n)s minutes left": _("%(n)s minutes left"),
        "No answer from the server.": _("No answer from the server."),
        "host": _("host"),
        "Guests": _("Guests"),
        "%(n)s joined": _("%(n)s joined"),
        "%(n)s here": _("%(n)s here"),
        "No one has joined yet": _("No one has joined yet"),
        "Next: round %(n)s": _("Next: round %(n)s"),
        "%(repeats)s repeat encounters (the minimum possible is %(lb)s)":
            _("%(repeats)s repeat encounters (the minimum possible is %(lb)s)"),
        "No one meets anyone twice.": _("No one meets anyone twice."),
        "Start round %(n)s": _("Start round %(n)s"),
        "Time is up": _("Time is up"),
        "Joining is open": _("Joining is open"),
        "Joining is closed": _("Joining is closed"),
        "away": _("away"),
        "left": _("left"),
        "shape_circle": _("circle"),
        "shape_square": _("square"),
        "shape_triangle": _("triangle"),
        "shape_diamond": _("diamond"),
        "shape_pentagon": _("pentagon"),
        "shape_hexagon": _("hexagon"),
        "shape_star": _("star"),
        "shape_cross": _("cross"),
    }
