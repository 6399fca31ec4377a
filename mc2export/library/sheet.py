"""The search results as text: a table, JSON rows, and a self-contained HTML contact sheet (thumbnails as
base64 JPEG data URIs, every path and the query HTML-escaped; no external file, script or style)."""
from __future__ import annotations

import base64
import html
import io
import json
from typing import List

from .search import Hit

THUMB = 256


def table(hits: List[Hit]) -> str:
    if not hits:
        return "no results"
    lines = [f"{'rank':>4}  {'score':>7}  path"]
    lines += [f"{h.rank:>4}  {h.score:7.4f}  {h.path}" for h in hits]
    return "\n".join(lines)


def rows(hits: List[Hit], query: str, method: str) -> dict:
    return {"query": query, "method": method,
            "results": [{"rank": h.rank, "score": round(h.score, 6), "path": h.path} for h in hits]}


def thumbnail(key: str) -> str:
    """A data URI of the photo shrunk to THUMB px (EXIF orientation applied), or "" if it cannot be read."""
    from PIL import Image, ImageOps

    from .decode import DecodeConfig, Unreadable, open_checked
    from .sources import read_key

    try:
        im = open_checked(read_key(key), DecodeConfig({"resolution": THUMB}))
        if im.format == "JPEG":
            im.draft("RGB", (THUMB, THUMB))
        im = ImageOps.exif_transpose(im)
        im.thumbnail((THUMB, THUMB))
        buf = io.BytesIO()
        im.convert("RGB").save(buf, "JPEG", quality=80)
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    except (OSError, Unreadable, ValueError, Image.DecompressionBombError):
        return ""


_STYLE = ("body{font-family:system-ui,sans-serif;margin:1.5em;background:#fafafa}"
          ".grid{display:flex;flex-wrap:wrap;gap:12px}"
          "figure{margin:0;width:256px;background:#fff;border:1px solid #ddd;padding:6px}"
          "img{max-width:256px;max-height:256px;display:block;margin:auto}"
          "figcaption{font-size:12px;word-break:break-all}.miss{height:128px;background:#eee}")


def contact_sheet(hits: List[Hit], query: str, method: str, library: str) -> str:
    e = html.escape
    cells = []
    for h in hits:
        uri = thumbnail(h.path)
        pic = f'<img src="{uri}" alt="{e(h.path)}">' if uri else '<div class="miss"></div>'
        cells.append(f"<figure>{pic}<figcaption><b>#{h.rank}</b> {h.score:.4f}<br>{e(h.path)}</figcaption></figure>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{e(query)} - mc2export search</title><style>{_STYLE}</style></head><body>"
            f"<h1>{e(query)}</h1><p>{len(hits)} result(s), {e(method)} search of {e(library)}</p>"
            f"<div class=\"grid\">{''.join(cells)}</div></body></html>\n")


def to_json(hits: List[Hit], query: str, method: str) -> str:
    return json.dumps(rows(hits, query, method), indent=2, ensure_ascii=False) + "\n"


__all__ = ["table", "rows", "contact_sheet", "to_json", "thumbnail"]
