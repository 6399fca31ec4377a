"""``mc2export bench-report``: merge result documents into one table (markdown), one plot (SVG) and merged
JSON / CSV. The plot is a self-contained SVG written by hand (no plotting dependency): image + text latency
per variant per runtime on a log axis, the 3-15 ms target band shaded and each variant's own target
(the paper's iPhone 12 Pro Max Core ML figure) marked."""
from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from ..errors import UserError

PALETTE = {"onnxruntime": "#1f77b4", "executorch": "#d62728", "coreml": "#2ca02c", "torch": "#9467bd",
           "torch-unfolded": "#8c564b"}
OTHER_COLORS = ["#ff7f0e", "#17becf", "#bcbd22", "#e377c2", "#7f7f7f"]


def _variant_order(v: str) -> Tuple[int, float, str]:
    """MobileCLIP2 first, then by the paper's image + text latency (smallest first)."""
    try:
        from .. import get_card

        lat = get_card(v)["paper"]["latency_ms"]
        total = float(lat["image"]) + float(lat["text"])
    except Exception:
        total = float("inf")
    return (0 if v.startswith("mobileclip2") else 1, total, v)


def result_key(r: dict) -> tuple:
    """Results with the same key measure the same thing; merging keeps the newest of each."""
    d = r["device"]
    return (r["variant"], r["bundle"].get("format"), r["bundle"].get("precision"), r["runtime"]["name"],
            r["runtime"].get("threads"), r["runtime"].get("compute_units"), d.get("kind"), d.get("model") or d.get("cpu"),
            r["mode"]["name"], tuple(r["total"]["towers"]))


def merge(docs: Sequence[dict], keep_all: bool = False) -> List[dict]:
    results = [r for d in docs for r in d["results"]]
    if keep_all:
        merged = results
    else:
        best: Dict[tuple, dict] = {}
        for r in results:
            k = result_key(r)
            if k not in best or str(r.get("created", "")) >= str(best[k].get("created", "")):
                best[k] = r
        merged = list(best.values())
    return sorted(merged, key=lambda r: (_variant_order(r["variant"]), r["device"].get("kind", ""), r["runtime"]["name"],
                                         r["bundle"].get("precision", ""), -(r["runtime"].get("threads") or 0),
                                         r["runtime"].get("compute_units") or ""))


def _cell(x) -> str:
    """Text from a results file as one markdown table cell: HTML escaped, ``|`` and line breaks neutralised."""
    return html.escape(" ".join(str(x).split())).replace("|", "\\|")


def _ms(x) -> str:
    if x is None:
        return "–"
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def _setting(r: dict) -> str:
    rt = r["runtime"]
    if rt.get("compute_units"):
        return f"{rt['name']} ({rt['compute_units']})"
    return f"{rt['name']} ({rt.get('threads')} thr)" if rt.get("threads") else rt["name"]


def markdown(results: List[dict], title: str = "mc2export latency") -> str:
    lines = [f"# {_cell(title)}", "", MARK, "",
             "Image and text towers measured separately and summed, as the paper reports. The target is the "
             "paper's latency on its hardware (iPhone 12 Pro Max, A14, Core ML); desktop and server CPUs are held "
             "to it too (the mission's targets hold for mobile and desktop hardware); a verdict of REFERENCE means "
             "the measured hardware is not comparable and the number is shown for reference only.", "",
             "| variant | format | precision | runtime | device | mode (stat) | image ms | text ms | total ms | "
             "target ms | ratio | peak MB | verdict | load avg (1m) |",
             "|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in results:
        tw = r["towers"]
        v = r["verdict"]
        d = r["device"]
        la = d.get("load_avg") or [None]
        la_end = (d.get("load_avg_end") or [None])[0]
        load = "–" if la[0] is None else (f"{la[0]:.2f}" + (f" → {la_end:.2f}" if la_end is not None else ""))
        lines.append("| " + " | ".join([_cell(c) for c in (
            r["variant"], r["bundle"].get("format", "?"), r["bundle"].get("precision", "?"), _setting(r),
            f"{d.get('class')}" + (f" ({d.get('model')})" if d.get("model") else ""),
            f"{r['mode']['name']} ({r['total']['stat']})")] + [
            _ms(tw.get("image", {}).get("headline_ms")), _ms(tw.get("text", {}).get("headline_ms")),
            _ms(r["total"]["headline_ms"]), _ms(v.get("target_ms")),
            f"{v['ratio']:.1f}×" if v.get("ratio") is not None else "–",
            f"{r['total']['peak_rss_mb']:.0f}" if r["total"].get("peak_rss_mb") else "–",
            v["status"].upper(), load]) + " |")
    notes = []
    seen = set()
    for r in results:
        n = r["verdict"]["note"]
        if n not in seen:
            seen.add(n)
            notes.append(f"- {_cell(n)}.")
    if notes:
        lines += ["", "Notes:", ""] + notes
    hosts = {(r["device"].get("class"), r["device"].get("model") or r["device"].get("cpu"), r["device"].get("os"),
              r["device"].get("cores_logical"), r["device"].get("memory_gb")) for r in results}
    if hosts:
        lines += ["", "Devices:", ""]
        for c, m, os_, cores, mem in sorted(hosts, key=str):
            lines.append("- " + _cell(f"{c}: {m}, {cores} logical cores, {mem} GB, {os_}"))
    return "\n".join(lines) + "\n"


def _plot_label(r: dict) -> str:
    return f"{_setting(r)} {r['bundle'].get('precision', '')} · {r['device'].get('class')}"


def svg_plot(results: List[dict], band: Tuple[float, float] = (3.0, 15.0), title: str = "image + text latency") -> str:
    """Horizontal bars (log axis), one group per variant, one bar per runtime setting."""
    rows = [r for r in results if r["total"].get("headline_ms")]
    if not rows:
        raise UserError("no results with a latency to plot")
    groups: Dict[str, List[dict]] = {}
    for r in rows:
        groups.setdefault(r["variant"], []).append(r)
    settings = []
    for r in rows:
        s = _plot_label(r)
        if s not in settings:
            settings.append(s)
    colors = {}
    extra = iter(OTHER_COLORS * 4)
    for s in settings:
        rt = s.split(" ")[0]
        colors[s] = PALETTE.get(rt) if rt in PALETTE and rt not in {c.split(" ")[0] for c in colors} else next(extra)
    values = [r["total"]["headline_ms"] for r in rows] + [r["verdict"].get("target_ms") or band[0] for r in rows]
    lo = 10 ** math.floor(math.log10(min(min(values), band[0]) * 0.8))
    hi = 10 ** math.ceil(math.log10(max(max(values), band[1]) * 1.2))
    left, right, top, bar_h, gap = 190, 40, 50, 14, 12
    width = 960
    plot_w = width - left - right
    n_bars = sum(len(g) for g in groups.values())
    height = top + n_bars * (bar_h + 2) + len(groups) * gap + 40 + 18 * (len(settings) + 2)

    def x(v: float) -> float:
        return left + plot_w * (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))

    plot_bottom = top + n_bars * (bar_h + 2) + len(groups) * gap
    e = html.escape
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="20" font-size="14" font-weight="bold">{e(title)} (ms, log scale)</text>',
           f'<text x="{left}" y="36" fill="#555">shaded: {band[0]:g}–{band[1]:g} ms target band; ◆ = the '
           f'variant\'s paper target (iPhone 12 Pro Max, Core ML)</text>',
           f'<rect x="{x(band[0]):.1f}" y="{top - 4}" width="{x(band[1]) - x(band[0]):.1f}" '
           f'height="{plot_bottom - top + 4}" fill="#2ca02c" fill-opacity="0.12"><title>target band '
           f'{band[0]:g}-{band[1]:g} ms</title></rect>']
    dec = lo
    while dec <= hi * 1.0001:
        for m in (1, 2, 5):
            v = dec * m
            if lo <= v <= hi:
                out.append(f'<line x1="{x(v):.1f}" y1="{top - 4}" x2="{x(v):.1f}" y2="{plot_bottom}" '
                           f'stroke="#ddd" stroke-width="{1 if m == 1 else 0.5}"/>')
                out.append(f'<text x="{x(v):.1f}" y="{plot_bottom + 14}" text-anchor="middle" fill="#555">{v:g}</text>')
        dec *= 10
    y = top
    for variant, rs in groups.items():
        y0 = y
        for r in rs:
            s = _plot_label(r)
            v = r["total"]["headline_ms"]
            tip = (f"{variant} {s}: {v:.2f} ms {r['total']['stat']} (image {_ms(r['towers'].get('image', {}).get('headline_ms'))}"
                   f" + text {_ms(r['towers'].get('text', {}).get('headline_ms'))}) on {r['device'].get('class')}")
            out.append(f'<rect x="{left}" y="{y}" width="{max(1.0, x(v) - left):.1f}" height="{bar_h}" '
                       f'fill="{colors[s]}"><title>{e(tip)}</title></rect>')
            out.append(f'<text x="{x(v) + 4:.1f}" y="{y + bar_h - 3}" fill="#333">{_ms(v)}</text>')
            y += bar_h + 2
        t = rs[0]["verdict"].get("target_ms")
        mid = (y0 + y - 2) / 2
        out.append(f'<text x="{left - 8}" y="{mid + 4:.1f}" text-anchor="end" font-weight="bold">{e(variant)}</text>')
        if t:
            cx = x(t)
            out.append(f'<line x1="{cx:.1f}" y1="{y0 - 3}" x2="{cx:.1f}" y2="{y + 1}" stroke="black" '
                       f'stroke-dasharray="3,2"/>')
            out.append(f'<path d="M{cx:.1f},{mid - 6:.1f} L{cx + 5:.1f},{mid:.1f} L{cx:.1f},{mid + 6:.1f} '
                       f'L{cx - 5:.1f},{mid:.1f} Z" fill="black"><title>{e(variant)} target {t:g} ms</title></path>')
        y += gap
    out.append(f'<line x1="{left}" y1="{top - 4}" x2="{left}" y2="{plot_bottom}" stroke="#333"/>')
    ly = plot_bottom + 34
    for s in settings:
        out.append(f'<rect x="{left}" y="{ly - 10}" width="12" height="12" fill="{colors[s]}"/>')
        out.append(f'<text x="{left + 18}" y="{ly}">{e(s)}</text>')
        ly += 18
    dev = sorted({f"{r['device'].get('class')} ({r['device'].get('model') or r['device'].get('cpu')})" for r in rows})
    out.append(f'<text x="{left}" y="{ly + 4}" fill="#555">measured on: {e("; ".join(dev))}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


MARK = "<!-- written by mc2export bench-report: a later bench-report may replace this folder's report -->"
REPORT_FILES = ("report.md", "latency.svg", "merged.json", "merged.csv")


def check_report_dir(out: Path) -> None:
    """``--out`` may hold only a report we wrote (its report.md carries :data:`MARK`): anything else is the
    user's and is never replaced."""
    from ..outputs import TMP_PREFIX

    if not out.is_dir():
        return
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith(TMP_PREFIX))
    foreign = [n for n in names if n not in REPORT_FILES]
    ours = False
    if "report.md" in names:
        try:
            with open(out / "report.md", encoding="utf-8", errors="replace") as f:
                ours = MARK in f.read(4096)
        except OSError:
            ours = False
    if foreign or (names and not ours):
        shown = ", ".join((foreign or names)[:3]) + (", ..." if len(foreign or names) > 3 else "")
        raise UserError(f"--out '{out}' holds files bench-report did not write ({shown}): choose an empty or new "
                        "folder, or one an earlier bench-report wrote")


def write_report(paths: Sequence, out_dir, keep_all: bool = False, title: str = "mc2export latency") -> dict:
    """Validate and merge result files; write report.md, latency.svg, merged.json, merged.csv into ``out_dir``."""
    import csv
    import io
    import json

    from ..outputs import output_dir, write_atomic
    from .harness import CSV_COLUMNS, csv_rows, document
    from .schema import load_results

    out = output_dir(out_dir, "--out")
    check_report_dir(out)
    if not paths:
        raise UserError("pass at least one results file (written by `mc2export bench --json`)")
    docs = [load_results(p) for p in paths]
    results = merge(docs, keep_all)
    md = markdown(results, title)  # everything is made before anything is written: no half-written folder
    svg = svg_plot(results)
    merged = document(results, command="mc2export bench-report " + " ".join(str(p) for p in paths))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(csv_rows(results))
    texts = {"merged.json": json.dumps(merged, indent=1, ensure_ascii=False, allow_nan=False) + "\n",
             "merged.csv": buf.getvalue(), "latency.svg": svg, "report.md": md}  # report.md, the mark, last
    for name, text in texts.items():  # a full disk / vanished folder: one line (mc2export.outputs.write_failure)
        write_atomic(out / name, text)
    return {"results": len(results), "files": [str(out / n) for n in ("report.md", "latency.svg", "merged.json",
                                                                      "merged.csv")], "markdown": md}


__all__ = ["merge", "markdown", "svg_plot", "write_report", "result_key", "check_report_dir", "MARK"]
