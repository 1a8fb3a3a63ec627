"""Hover and click on a report's figures, with no JavaScript and nothing fetched: the page stays one file.

matplotlib's SVG backend writes an artist's ``gid`` as its element's id. :func:`tip` marks an artist (a seed's
learning curve, a cell's point) with the text a reader sees on hover and the MLflow run it opens on click;
:func:`to_svg` writes the figure as inline SVG and puts each mark's text in an SVG ``<title>`` (every browser shows
it as a tooltip) and, when the report knows where the study's MLflow UI is, wraps the element in a link to its run.
A figure without marks stays a PNG (:func:`has_tips`).
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from typing import Callable

import matplotlib

SVG, XLINK = "http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"
TIPS = "_uwm_tips"          # attribute of a figure: {gid: (text, run_id or None)}


def tip(artist, text: str, run_id: str | None = None) -> None:
    """Mark ``artist`` (already drawn on a figure's axes): ``text`` on hover, a click opens ``run_id``'s run."""
    tips = artist.figure.__dict__.setdefault(TIPS, {})
    gid = f"uwm-tip-{len(tips)}"
    artist.set_gid(gid)
    tips[gid] = (text, run_id)


def has_tips(fig) -> bool:
    return bool(getattr(fig, TIPS, None))


def to_svg(fig, run_link: Callable[[str], str] | None = None, dpi: int = 110) -> str:
    """The figure as an inline ``<svg>`` element (no XML prolog), ``dpi`` pixels per inch wide and high (the size
    its PNG would have), with a ``<title>`` in each marked element and, given ``run_link`` (run id -> URL), a link
    around it that opens in a new tab. Text stays text (smaller than paths, and selectable)."""
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "uwm"}):   # the same bytes every run
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    ET.register_namespace("", SVG)
    ET.register_namespace("xlink", XLINK)
    root = ET.fromstring(buffer.getvalue())
    for metadata in root.findall(f"{{{SVG}}}metadata"):       # the creator's RDF block: nothing a reader needs
        root.remove(metadata)
    width, height = fig.get_size_inches() * dpi
    root.set("width", f"{width:.0f}px")
    root.set("height", f"{height:.0f}px")
    root.set("style", "max-width: 100%; height: auto")
    tips = getattr(fig, TIPS, {})
    parents = {child: parent for parent in root.iter() for child in parent}
    for element in list(root.iter()):
        mark = tips.get(element.get("id"))
        if mark is None:
            continue
        text, run_id = mark
        title = ET.Element(f"{{{SVG}}}title")
        title.text = text
        element.insert(0, title)
        if run_link is not None and run_id:
            parent = parents[element]
            link = ET.Element(f"{{{SVG}}}a", {"href": run_link(run_id), "target": "_blank"})
            parent.insert(list(parent).index(element), link)
            parent.remove(element)
            link.append(element)
    return ET.tostring(root, encoding="unicode")
