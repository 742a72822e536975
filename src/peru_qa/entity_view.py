"""The entity panel's rendering (issue 33), apart from any UI toolkit so that it is tested as plain strings and any
front end (the Gradio chat, a static page) can show it: the panel's HTML (documents and pages that name the entity,
who and what appear with it), a co-mention network and a timeline of dated mentions, both as SVG pictures drawn
here (no plotting library: matplotlib is not a dependency, and a star of co-mentions needs no layout engine).

Everything is in the question's language ("es" or "en")."""

from __future__ import annotations

import math
from collections import OrderedDict
from html import escape

from .records import EntityDetail

_TEXT = {
    "en": {"person": "Person", "organization": "Organization", "place": "Place", "mentions": "mentions",
           "documents": "documents", "also": "Also named", "docs": "Documents that mention it",
           "with": "Mentioned with", "none": "No document names this entity.", "page": "p.",
           "shared": "passages in common", "timeline": "Dated mentions", "network": "Who and what appear with it",
           "undated": "No dated mentions.", "more": "more mentions not shown",
           "sampled": "counted over {n} of its {m} passages", "open": "Open"},
    "es": {"person": "Persona", "organization": "Organización", "place": "Lugar", "mentions": "menciones",
           "documents": "documentos", "also": "También llamado", "docs": "Documentos que lo mencionan",
           "with": "Mencionado con", "none": "Ningún documento nombra esta entidad.", "page": "p.",
           "shared": "pasajes en común", "timeline": "Menciones fechadas", "network": "Quién y qué aparecen con él",
           "undated": "No hay menciones fechadas.", "more": "menciones más no mostradas",
           "sampled": "contadas en {n} de sus {m} pasajes", "open": "Abrir"},
}
#: node colours per type (colour-blind-safe Okabe–Ito hues)
_COLOURS = {"person": "#0072B2", "organization": "#D55E00", "place": "#009E73"}


def _t(language: str) -> dict[str, str]:
    return _TEXT["es" if language == "es" else "en"]


def entity_panel(detail: EntityDetail | None, language: str = "en", sentences_per_document: int = 3,
                 links: bool = False) -> str:
    """The panel's HTML: name, type, aliases; each document that names it with its pages and a few sentences;
    the entities named in the same passages with how many they share.

    `links` (the chat): each document gets an "Open" button (data-pqa-open="doc:<id>@<first page>") and each
    co-mentioned entity a link to its own panel (data-pqa-entity="<language>:<name>")."""
    t = _t(language)
    if detail is None:
        return f'<p class="entity-none">{escape(t["none"])}</p>'
    e = detail.entity
    parts = [f'<div class="entity-panel" lang="{"es" if language == "es" else "en"}">',
             f'<h3>{escape(e.name)} <small>· {escape(t.get(e.type, e.type))} · {e.mentions} {t["mentions"]} · '
             f'{len(e.documents)} {t["documents"]}</small></h3>']
    if e.aliases:
        parts.append(f'<p class="entity-aliases">{escape(t["also"])}: {escape("; ".join(e.aliases))}</p>')
    by_doc: OrderedDict[str, list] = OrderedDict()
    for m in detail.mentions:
        by_doc.setdefault(m.document, []).append(m)
    parts.append(f'<h4>{escape(t["docs"])}</h4><ul class="entity-documents">')
    for document, mentions in by_doc.items():
        pages = sorted({m.page for m in mentions if m.page is not None})
        where = f' · {t["page"]} {", ".join(str(p) for p in pages)}' if pages else ""
        quotes = "".join(f"<li>{escape(' '.join(m.sentence.split()))}"
                         f"{f' <small>({escape(m.date)})</small>' if m.date else ''}</li>"
                         for m in mentions[:sentences_per_document])
        opener = (f' <button class="pqa-open" data-pqa-open="doc:{escape(mentions[0].doc_id)}@'
                  f'{pages[0] if pages else ""}">{escape(t["open"])}</button>' if links else "")
        parts.append(f"<li><b>{escape(mentions[0].title or document)}</b> <small>{escape(document)}{where}</small>"
                     f"{opener}<ul>{quotes}</ul></li>")
    parts.append("</ul>")
    shown = len(detail.mentions)
    if e.mentions > shown:
        parts.append(f'<p class="entity-more">+{e.mentions - shown} {escape(t["more"])}</p>')
    if detail.co_mentions:
        sampled = (f' <small>({escape(t["sampled"].format(n=detail.co_mention_passages, m=detail.passages))})'
                   "</small>" if detail.co_mention_passages < detail.passages else "")
        parts.append(f'<h4>{escape(t["with"])}{sampled}</h4><ul class="entity-with">')
        lang = "es" if language == "es" else "en"
        parts += [(f'<li><a class="pqa-entity" href="#" data-pqa-entity="{lang}:{escape(c.name)}">{escape(c.name)}'
                   "</a>" if links else f"<li>{escape(c.name)}") +
                  f' <small>({escape(t.get(c.type, c.type))}; {c.count} {escape(t["shared"])})</small></li>'
                  for c in detail.co_mentions]
        parts.append("</ul>")
    parts.append("</div>")
    return "".join(parts)


def network_svg(detail: EntityDetail, language: str = "en", size: int = 520, limit: int = 16) -> str:
    """The co-mention network as an SVG picture: the entity in the middle, the entities named in the same passages
    around it, each line as thick as the passages they share, each node coloured by type."""
    t = _t(language)
    others = detail.co_mentions[:limit]
    centre = size / 2
    radius = size * 0.34
    top = max((c.count for c in others), default=1)
    lines, nodes = [], []
    for n, c in enumerate(others):
        angle = 2 * math.pi * n / max(1, len(others)) - math.pi / 2
        x, y = centre + radius * math.cos(angle), centre + radius * math.sin(angle)
        width = 1 + 5 * c.count / top
        lines.append(f'<line x1="{centre:.1f}" y1="{centre:.1f}" x2="{x:.1f}" y2="{y:.1f}" stroke="#999" '
                     f'stroke-width="{width:.1f}"><title>{escape(c.name)}: {c.count} {escape(t["shared"])}</title>'
                     "</line>")
        anchor = "start" if math.cos(angle) > 0.2 else "end" if math.cos(angle) < -0.2 else "middle"
        dx = 10 if anchor == "start" else -10 if anchor == "end" else 0
        dy = 18 if math.sin(angle) > 0.5 else -10 if math.sin(angle) < -0.5 else 4
        nodes.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{5 + 5 * c.count / top:.1f}" '
                     f'fill="{_COLOURS.get(c.type, "#666")}"/><text x="{x + dx:.1f}" y="{y + dy:.1f}" '
                     f'text-anchor="{anchor}" font-size="12">{escape(_short(c.name))}</text>')
    e = detail.entity
    nodes.append(f'<circle cx="{centre}" cy="{centre}" r="16" fill="{_COLOURS.get(e.type, "#666")}"/>'
                 f'<text x="{centre}" y="{centre + 34}" text-anchor="middle" font-size="14" font-weight="bold">'
                 f"{escape(_short(e.name, 40))}</text>")
    legend = "".join(f'<circle cx="{14 + 120 * i}" cy="{size - 14}" r="5" fill="{colour}"/>'
                     f'<text x="{24 + 120 * i}" y="{size - 10}" font-size="11">{escape(t[kind])}</text>'
                     for i, (kind, colour) in enumerate(_COLOURS.items()))
    pad = size // 5  # room either side for the labels of the nodes at the left and right
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="{-pad} 0 {size + 2 * pad} {size}" '
            f'width="{size + 2 * pad}" height="{size}" '
            f'role="img" aria-label="{escape(t["network"])}: {escape(e.name)}" font-family="sans-serif">'
            f"<title>{escape(t['network'])}: {escape(e.name)}</title>{''.join(lines)}{''.join(nodes)}{legend}</svg>")


def timeline_svg(detail: EntityDetail, language: str = "en", width: int = 560, height: int = 200) -> str:
    """The dated mentions per year as an SVG bar chart (a mention's date is the one its sentence states, else
    its document's "checked" date); a short note when none is dated."""
    t = _t(language)
    years: dict[int, int] = {}
    for date, count in detail.timeline:
        if date[:4].isdigit():
            years[int(date[:4])] = years.get(int(date[:4]), 0) + count
    title = f"{t['timeline']}: {detail.entity.name}"
    if not years:
        return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} 40" width="{width}" height="40" '
                f'role="img" aria-label="{escape(title)}"><text x="8" y="24" font-family="sans-serif" '
                f'font-size="13">{escape(t["undated"])}</text></svg>')
    first, last = min(years), max(years)
    span = last - first + 1
    left, bottom, top_pad = 36, 28, 16
    plot_w, plot_h = width - left - 10, height - bottom - top_pad
    bar = plot_w / span
    peak = max(years.values())
    parts = [f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}" stroke="#333"/>',
             f'<text x="{left - 6}" y="{top_pad + 4}" text-anchor="end" font-size="10">{peak}</text>']
    step = max(1, math.ceil(span / 12))
    for year in range(first, last + 1):
        x = left + (year - first) * bar
        count = years.get(year, 0)
        if count:
            h = plot_h * count / peak
            parts.append(f'<rect x="{x + 1:.1f}" y="{height - bottom - h:.1f}" width="{max(1.0, bar - 2):.1f}" '
                         f'height="{h:.1f}" fill="{_COLOURS.get(detail.entity.type, "#666")}"><title>{year}: '
                         f'{count} {escape(t["mentions"])}</title></rect>')
        if (year - first) % step == 0 or year == last:
            parts.append(f'<text x="{x + bar / 2:.1f}" y="{height - bottom + 14}" text-anchor="middle" '
                         f'font-size="10">{year}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" aria-label="{escape(title)}" font-family="sans-serif">'
            f"<title>{escape(title)}</title>{''.join(parts)}</svg>")


def name_spans(text: str, language: str) -> list[tuple[int, int, str, str]]:
    """(start, end, entity name, type) of the names in a text, such as an answer or a source passage, so that a
    front end can link each to its entity panel (`kb.entity(name)`). Same extraction as at ingest."""
    from .entities import DocumentText, extract

    return [(m.start, m.end, m.entity, m.type)
            for m in extract(DocumentText([(1, text)], "es" if language == "es" else "en", {}))]


def _short(name: str, limit: int = 28) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


__all__ = ["entity_panel", "network_svg", "timeline_svg", "name_spans"]
