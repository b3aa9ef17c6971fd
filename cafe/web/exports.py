"""The priorities report in each format: CSV, JSON, Markdown, XLSX and a printable HTML page."""
from __future__ import annotations

import csv
import io
import json
from typing import Any
from xml.sax.saxutils import escape

from flask_babel import gettext as _


def _cell(value: Any) -> Any:
    """Keep spreadsheet programs from running a note as a formula."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def as_json(report: dict[str, Any]) -> str:
    return json.dumps(report, ensure_ascii=False, indent=2)


def _rows(report: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    names = report["names_included"]
    header = [_("rank"), _("theme"), _("dots"), _("voters"), _("tables"), _("rounds"), _("note"), _("note round"),
              _("note table"), _("language")] + ([_("name")] if names else [])
    rows = []
    for p in report["priorities"]:
        base = [p["rank"], p["theme"], p["dots"], p["voters"], " ".join(map(str, p["tables"])),
                " ".join(map(str, p["rounds"]))]
        for note in p["notes"] or [{"text": "", "round": "", "table": "", "language": "", "name": ""}]:
            rows.append(base + [note["text"], note["round"], note["table"], note.get("language") or ""]
                        + ([note.get("name", "")] if names else []))
    return header, rows


def as_csv(report: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    header, rows = _rows(report)
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(v) for v in row])
    return "\ufeff" + out.getvalue()


def _md(text: str) -> str:
    """Markdown-escape a person's text so it shows literally."""
    out = []
    for ch in text.replace("\r", " ").replace("\n", " "):
        out.append("\\" + ch if ch in "\\`*_{}[]()<>#+-.!|~" else ch)
    return "".join(out)


def as_markdown(report: dict[str, Any]) -> str:
    cafe = report["cafe"]
    lines = [f"# {_md(cafe['title'])}", "",
             _("Community-identified priorities, %(date)s. %(people)s people took part at %(tables)s tables "
               "over %(rounds)s rounds.", date=cafe["date"], people=cafe["participants"], tables=cafe["tables"],
               rounds=cafe["rounds"]), ""]
    if cafe["questions"]:
        lines.append(f"**{_('Questions')}**")
        lines += [f"{i}. {_md(q)}" for i, q in enumerate(dict.fromkeys(cafe["questions"]), 1)]
        lines.append("")
    lines += [f"| {_('rank')} | {_('theme')} | {_('dots')} | {_('tables')} | {_('notes')} |", "|---:|---|---:|---:|---:|"]
    for p in report["priorities"]:
        lines.append(f"| {p['rank']} | {_md(p['theme'])} | {p['dots']} | {len(p['tables'])} | {len(p['notes'])} |")
    lines.append("")
    for p in report["priorities"]:
        lines.append(f"## {p['rank']}. {_md(p['theme'])}")
        lines.append(_("%(dots)s dots from %(voters)s people; raised at tables %(tables)s in rounds %(rounds)s.",
                       dots=p["dots"], voters=p["voters"], tables=", ".join(map(str, p["tables"])) or "-",
                       rounds=", ".join(map(str, p["rounds"])) or "-"))
        lines.append("")
        for note in p["notes"]:
            who = f" — {_md(note['name'])}" if note.get("name") else ""
            lines.append(f"- {_md(note['text'])} ({_('round')} {note['round']}, {_('table')} {note['table']}){who}")
        lines.append("")
    return "\n".join(lines)


def as_xlsx(report: dict[str, Any]) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    sheet = book.active
    sheet.title = _("Priorities")[:31]
    sheet.append([_("rank"), _("theme"), _("dots"), _("voters"), _("tables"), _("rounds"), _("notes")])
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for p in report["priorities"]:
        sheet.append([p["rank"], _cell(p["theme"]), p["dots"], p["voters"], len(p["tables"]), len(p["rounds"]),
                      len(p["notes"])])
    notes = book.create_sheet(_("Notes")[:31])
    header, rows = _rows(report)
    notes.append(header)
    for cell in notes[1]:
        cell.font = Font(bold=True)
    for row in rows:
        notes.append([_cell(v) for v in row])
    about = book.create_sheet(_("About")[:31])
    cafe = report["cafe"]
    for key, value in (("title", cafe["title"]), ("date", cafe["date"]), ("participants", cafe["participants"]),
                       ("tables", cafe["tables"]), ("rounds", cafe["rounds"]), ("schema", report["schema"])):
        about.append([key, _cell(value)])
    for q in dict.fromkeys(cafe["questions"]):
        about.append(["question", _cell(q)])
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


def bar_chart_svg(report: dict[str, Any], width: int = 720) -> str:
    """A horizontal bar chart of dots per priority, as SVG text (every label escaped)."""
    items = report["priorities"][:15]
    bar_h, gap, label_w = 26, 10, 260
    height = max(1, len(items)) * (bar_h + gap) + gap
    top = max([p["dots"] for p in items] + [1])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
             f'role="img" aria-label="{escape(_("Dots per priority"), {chr(34): "&quot;"})}">']
    for i, p in enumerate(items):
        y = gap + i * (bar_h + gap)
        w = int((width - label_w - 60) * p["dots"] / top)
        label = p["theme"] if len(p["theme"]) <= 34 else p["theme"][:33] + "…"
        parts.append(f'<text x="{label_w - 8}" y="{y + bar_h * 0.7:.0f}" text-anchor="end" class="chart-label">'
                     f'{p["rank"]}. {escape(label)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y}" width="{max(w, 2)}" height="{bar_h}" class="chart-bar"/>')
        parts.append(f'<text x="{label_w + max(w, 2) + 6}" y="{y + bar_h * 0.7:.0f}" class="chart-value">'
                     f'{p["dots"]}</text>')
    parts.append("</svg>")
    return "".join(parts)
