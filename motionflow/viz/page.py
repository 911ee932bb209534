"""Static HTML report pages (no server, no script): metrics tables, the protocol, pictures with captions.

A page is a list of sections rendered in order: :class:`Fields` (key / value pairs such as the
protocol), :class:`Table`, :class:`Gallery` (pictures with captions) and :class:`Text`. Every string
that reaches the page is HTML-escaped, including the text of nested values (sample ids, paths, method
options come from data: a sample id holding ``<script>`` is shown as text and never runs). Picture
sources must be relative paths inside the page's folder (no ``..``, not absolute); they are
percent-encoded, so odd file names still resolve.

``motionflow demo`` writes ``index.html`` with it and ``motionflow eval`` writes ``REPORT.html`` beside
``REPORT.json`` (:func:`report_sections` turns a report's JSON dict into sections).
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from ..errors import FormatError

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px auto;
       max-width: 1280px; padding: 0 16px; color: #1d1d1f; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.9em; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f4f4f6; }
.gallery { display: flex; flex-wrap: wrap; gap: 14px; }
figure { margin: 0; max-width: 100%; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; image-rendering: auto; }
figcaption { font-size: 0.85em; color: #444; max-width: 640px; }
p.note { color: #555; font-size: 0.9em; }
div.scroll { overflow-x: auto; max-width: 100%; }
td ul { margin: 0; padding-left: 1.2em; }
""".strip()


def escape(value) -> str:
    """HTML-escaped text of ``value`` (quotes too, so it is safe in attributes)."""
    return html.escape(value if isinstance(value, str) else _plain(value), quote=True)


def _plain(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "-" if not math.isfinite(value) else f"{value:.4g}"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str, allow_nan=False, ensure_ascii=False) if _finite(value) else str(value)
    return str(value)


def _finite(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_finite(v) for v in value)
    return True


def picture_src(src) -> str:
    """The ``src`` attribute of a picture: a relative POSIX path below the page's folder, percent-encoded.

    Raises:
        FormatError: ``src`` is absolute or climbs out of the folder with ``..``.
    """
    text = str(src).replace("\\", "/")
    path = PurePosixPath(text)
    if not text or path.is_absolute() or ".." in path.parts or ":" in path.parts[0]:
        raise FormatError(f"picture {text!r}: expected a relative path inside the page's folder")
    return quote(path.as_posix(), safe="/")


@dataclass
class Fields:
    """Key / value pairs (nested values are shown as JSON text)."""

    title: str
    items: dict


@dataclass
class Table:
    """A table; numbers are right-aligned and shown with 4 significant digits (None / NaN as ``-``)."""

    title: str
    header: list
    rows: list
    note: str = ""


@dataclass
class Picture:
    """A picture file (path relative to the page) and its caption."""

    src: str
    caption: str = ""


@dataclass
class Gallery:
    """Pictures with captions: :class:`Picture` objects or ``(src, caption)`` pairs."""

    title: str
    pictures: list = field(default_factory=list)
    note: str = ""

    def __post_init__(self) -> None:
        self.pictures = [p if isinstance(p, Picture) else Picture(*p) for p in self.pictures]


@dataclass
class Text:
    title: str
    text: str


def _cell(value, tag: str = "td") -> str:
    """One cell: numbers right-aligned; a list as bullets and a dict as ``key: value`` lines (read by
    people, not as JSON)."""
    num = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(value, (list, tuple)) and value:
        text = "<ul>" + "".join(f"<li>{escape(v)}</li>" for v in value) + "</ul>"
    elif isinstance(value, dict) and value:
        text = "<br>".join(f"{escape(k)}: {escape(v)}" for k, v in value.items())
    else:
        text = escape(value)
    return f'<{tag}{" class=num" if num and tag == "td" else ""}>{text}</{tag}>'


def _section(section) -> str:
    title = f"<h2>{escape(section.title)}</h2>"
    if isinstance(section, Fields):
        rows = "".join(f"<tr>{_cell(k, 'th')}{_cell(v)}</tr>" for k, v in section.items.items())
        return f'{title}<div class="scroll"><table>{rows}</table></div>'
    if isinstance(section, Table):
        head = "<tr>" + "".join(_cell(h, "th") for h in section.header) + "</tr>"
        body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in section.rows)
        note = f'<p class="note">{escape(section.note)}</p>' if section.note else ""
        return f'{title}<div class="scroll"><table>{head}{body}</table></div>{note}'
    if isinstance(section, Gallery):
        figures = "".join(
            f'<figure><img src="{escape(picture_src(p.src))}" alt="{escape(p.caption or p.src)}">'
            f"<figcaption>{escape(p.caption)}</figcaption></figure>"
            for p in section.pictures
        )
        note = f'<p class="note">{escape(section.note)}</p>' if section.note else ""
        return f'{title}{note}<div class="gallery">{figures}</div>'
    if isinstance(section, Text):
        return f'{title}<p class="note">{escape(section.text)}</p>'
    raise FormatError(f"page section: expected Fields, Table, Gallery or Text, found {type(section).__name__}")


def render_page(title: str, sections, subtitle: str = "") -> str:
    """The page's HTML text (UTF-8, self-contained CSS, no script)."""
    body = "".join(_section(s) for s in sections)
    sub = f'<p class="note">{escape(subtitle)}</p>' if subtitle else ""
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>"
        f"<body><h1>{escape(title)}</h1>{sub}{body}</body></html>\n"
    )


def write_page(path, title: str, sections, subtitle: str = "") -> Path:
    """Write :func:`render_page` to ``path`` atomically; pictures are referenced relative to its folder."""
    from ..io.atomic import atomic_write_bytes

    path = Path(path)
    atomic_write_bytes(path, render_page(title, sections, subtitle).encode("utf-8"))
    return path


# ------------------------------------------------------------------------------------- eval report
MAX_SAMPLE_ROWS = 500


def report_sections(report: dict, pictures=()) -> list:
    """Sections of an evaluation report page from the report's JSON dict (``Report.to_dict()``).

    Metrics (value, unit when the report has one, reduction and the other reductions), the protocol,
    the per-sample table (the first :data:`MAX_SAMPLE_ROWS` rows), runtime, environment and
    ``pictures`` (``Picture`` list, or ``(src, caption)`` pairs).
    """
    metrics = report.get("metrics") or {}
    rows = []
    for name, entry in metrics.items():
        entry = entry if isinstance(entry, dict) else {"value": entry}
        alts = entry.get("alternatives") or {}
        rows.append([name, entry.get("value"), entry.get("unit", ""), entry.get("reduction", ""),
                     ", ".join(f"{r}: {_plain(v)}" for r, v in alts.items())])
    sections: list = [Table("Metrics", ["metric", "value", "unit", "reduction", "other reductions"], rows)]
    if report.get("protocol"):
        sections.append(Fields("Protocol", report["protocol"]))
    per_sample = report.get("per_sample") or []
    if per_sample:
        names = list(dict.fromkeys(k for r in per_sample[:MAX_SAMPLE_ROWS] for k in (r.get("metrics") or {})))
        body = [[r.get("id"), *[(r.get("metrics") or {}).get(k) for k in names], r.get("seconds")]
                for r in per_sample[:MAX_SAMPLE_ROWS]]
        more = len(per_sample) - MAX_SAMPLE_ROWS
        sections.append(Table("Per sample", ["id", *names, "seconds"], body,
                              note=f"{more} more samples in the JSON report" if more > 0 else ""))
    if pictures:
        sections.append(Gallery("Pictures", list(pictures)))
    for key in ("runtime", "environment"):
        if report.get(key):
            sections.append(Fields(key.capitalize(), report[key]))
    return sections


def render_report_page(report: dict, pictures=()) -> str:
    """The HTML of an evaluation report dict (see :func:`report_sections`)."""
    split = f" ({report['split']})" if report.get("split") else ""
    title = f"{report.get('dataset', '?')}{split}: {report.get('method', '?')}"
    subtitle = f"{report.get('num_samples', len(report.get('per_sample') or []))} samples; motionflow evaluation report"
    return render_page(title, report_sections(report, pictures), subtitle)


def write_report_page(path, report: dict, pictures=()) -> Path:
    """Write ``REPORT.html`` of an evaluation report dict atomically (see :func:`report_sections`)."""
    from ..io.atomic import atomic_write_bytes

    path = Path(path)
    atomic_write_bytes(path, render_report_page(report, pictures).encode("utf-8"))
    return path
