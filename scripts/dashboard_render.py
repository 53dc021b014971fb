#!/usr/bin/env python3
"""Draws deploy/grafana/kafkad.json's panels as one HTML page of SVG charts.

Every panel target's query runs as a Prometheus range query (the dashboard's variables
replaced: `$job` by the given job, the other label filters by `.*`, `$__rate_interval` by the
given interval), laid out on the dashboard's own 24-column grid. Standard library only;
scripts/dashboard-screenshot.sh captures the page with headless Chromium.

    dashboard_render.py --prometheus http://127.0.0.1:9090 --start T0 --end T1 \
        --job kafkad --out page.html      # prints the page's height in pixels
"""

import argparse
import html
import json
import math
import re
import sys
import time
import urllib.parse
import urllib.request

WIDTH = 1600
ROW_PX = 30  # Grafana's grid row height
MARGIN = 8
PALETTE = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9",
           "#fade2a", "#96d98d", "#ffb357", "#ca95e5", "#ff7383"]
BACKGROUND = "#111217"
PANEL = "#181b1f"
BORDER = "#2c3235"
TEXT = "#ccccdc"
MUTED = "#8e8e9e"


def substitute(expr, job, rate_interval):
    def value(match):
        name = match.group(1) or match.group(2)
        if name in ("__rate_interval", "__interval"):
            return rate_interval
        if name == "job":
            return job
        return ".*"
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def query_range(prometheus, expr, start, end, step):
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{prometheus}/api/v1/query_range?{params}", timeout=30) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body}")
    return body["data"]["result"]


def legend(template, labels):
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template) or \
        "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def si(value):
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


def fmt(value, unit):
    if unit == "s":
        if value == 0:
            return "0"
        for limit, suffix in ((1, "s"), (1e-3, "ms"), (1e-6, "µs")):
            if abs(value) >= limit:
                return f"{value / limit:.3g} {suffix}"
        return f"{value * 1e9:.3g} ns"
    return si(value)


def nice_max(value):
    if value <= 0:
        return 1
    exponent = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exponent:
            return step * exponent
    return 10 * exponent


def chart(panel, series, start, end, x, y, w, h):
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
    out = [f'<g transform="translate({x},{y})">',
           f'<rect width="{w}" height="{h}" rx="3" fill="{PANEL}" stroke="{BORDER}"/>',
           f'<text x="10" y="20" fill="{TEXT}" font-size="13" font-weight="600">'
           f'{html.escape(panel["title"])}</text>']
    shown = [s for s in series if s["points"]][:8]
    legend_rows = math.ceil(len(shown) / 2) if shown else 1
    left, right, top = 58, 12, 32
    bottom = 22 + 15 * legend_rows
    plot_w, plot_h = w - left - right, h - top - bottom
    top_value = nice_max(max((v for s in shown for _, v in s["points"]), default=0))
    for i in range(5):
        value = top_value * i / 4
        py = top + plot_h - plot_h * i / 4
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{py:.1f}" y2="{py:.1f}" '
                   f'stroke="{BORDER}" stroke-width="1"/>')
        out.append(f'<text x="{left - 6}" y="{py + 4:.1f}" fill="{MUTED}" font-size="10" '
                   f'text-anchor="end">{html.escape(fmt(value, unit))}</text>')
    for i in range(5):
        t = start + (end - start) * i / 4
        px = left + plot_w * i / 4
        label = time.strftime("%H:%M:%S", time.localtime(t))
        anchor = ("start", "middle", "middle", "middle", "end")[i]
        out.append(f'<text x="{px:.1f}" y="{top + plot_h + 14}" fill="{MUTED}" font-size="10" '
                   f'text-anchor="{anchor}">{label}</text>')
    if not shown:
        out.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" fill="{MUTED}" '
                   f'font-size="12" text-anchor="middle">No data</text>')
    for n, s in enumerate(shown):
        color = PALETTE[n % len(PALETTE)]
        path, previous = [], None
        for t, v in s["points"]:
            px = left + plot_w * (t - start) / (end - start)
            py = top + plot_h - plot_h * v / top_value
            gap = previous is not None and t - previous > 3 * s["step"]
            path.append(f'{"M" if previous is None or gap else "L"}{px:.1f},{py:.1f}')
            previous = t
        out.append(f'<path d="{" ".join(path)}" fill="none" stroke="{color}" '
                   f'stroke-width="1.5"/>')
        lx = 10 + (n % 2) * (w - 20) / 2
        ly = h - bottom + 26 + 15 * (n // 2)
        out.append(f'<rect x="{lx}" y="{ly - 8}" width="10" height="3" fill="{color}"/>')
        out.append(f'<text x="{lx + 14}" y="{ly - 3}" fill="{TEXT}" font-size="11">'
                   f'{html.escape(s["name"][:60])}</text>')
    out.append("</g>")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dashboard", default="deploy/grafana/kafkad.json")
    parser.add_argument("--prometheus", required=True)
    parser.add_argument("--start", type=float, required=True)
    parser.add_argument("--end", type=float, required=True)
    parser.add_argument("--job", default="kafkad")
    parser.add_argument("--step", type=float, default=2)
    parser.add_argument("--rate-interval", default="10s")
    parser.add_argument("--subtitle", default="")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    dashboard = json.load(open(args.dashboard))
    unit_w = (WIDTH - MARGIN) / 24
    header = 48
    parts, height = [], header
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        x = MARGIN + grid["x"] * unit_w
        y = header + grid["y"] * ROW_PX
        w = grid["w"] * unit_w - MARGIN
        h = grid["h"] * ROW_PX - MARGIN
        height = max(height, y + h + MARGIN)
        if panel["type"] == "row":
            parts.append(f'<text x="{x}" y="{y + 20}" fill="{TEXT}" font-size="15" '
                         f'font-weight="600">{html.escape(panel["title"])}</text>')
            continue
        series = []
        for target in panel["targets"]:
            expr = substitute(target["expr"], args.job, args.rate_interval)
            for result in query_range(args.prometheus, expr, args.start, args.end, args.step):
                points = [(float(t), float(v)) for t, v in result["values"]
                          if v not in ("NaN", "+Inf", "-Inf")]
                series.append({"name": legend(target.get("legendFormat", ""), result["metric"]),
                               "points": points, "step": args.step})
        series.sort(key=lambda s: s["name"])
        parts.append(chart(panel, series, args.start, args.end, x, y, w, h))

    title = html.escape(dashboard["title"])
    subtitle = html.escape(args.subtitle)
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>html,body{{margin:0;background:{BACKGROUND};font-family:'DejaVu Sans',sans-serif}}</style>
</head><body>
<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0f}"
     font-family="DejaVu Sans, sans-serif">
<text x="{MARGIN}" y="28" fill="{TEXT}" font-size="20" font-weight="600">{title}</text>
<text x="{MARGIN + 90}" y="28" fill="{MUTED}" font-size="13">{subtitle}</text>
{chr(10).join(parts)}
</svg></body></html>
"""
    with open(args.out, "w") as f:
        f.write(page)
    print(f"{height:.0f}")


if __name__ == "__main__":
    sys.exit(main())
