#!/usr/bin/env python3
"""Draws docs/crates.svg, the workspace's crates and their dependencies, from the
Cargo.toml files, so the picture cannot drift from the code.

    python3 hack/crates-svg.py            rewrite docs/crates.svg
    python3 hack/crates-svg.py --check    exit 1 if docs/crates.svg is not what the
                                          Cargo.toml files say (run by hack/test.sh lint)

Layout: a crate sits one row above the highest crate it depends on (row 0 at the
bottom: crates that depend on no workspace crate), so every arrow points down.
Within a row, crates keep the order of the workspace's `members` list.
"""

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "crates.svg"

BOX_W, BOX_H = 190, 54
GAP_X, GAP_Y = 24, 70
MARGIN = 20


def load():
    ws = tomllib.loads((ROOT / "Cargo.toml").read_text())
    members = ws["workspace"]["members"]
    crates = {}
    for d in members:
        t = tomllib.loads((ROOT / d / "Cargo.toml").read_text())
        name = t["package"]["name"]
        bins = [b["name"] for b in t.get("bin", [])]
        if not bins and (ROOT / d / "src" / "main.rs").exists():
            bins = [name]
        crates[name] = {"dir": d, "deps": set(t.get("dependencies", {})), "bins": bins,
                        "desc": t["package"].get("description", "")}
    names = set(crates)
    for c in crates.values():
        c["deps"] &= names
    order = [tomllib.loads((ROOT / d / "Cargo.toml").read_text())["package"]["name"] for d in members]
    return crates, order


def rows_of(crates):
    row = {}

    def depth(n, seen=()):
        if n in row:
            return row[n]
        if n in seen:
            sys.exit(f"dependency cycle through {n}")
        r = 0 if not crates[n]["deps"] else 1 + max(depth(d, seen + (n,)) for d in crates[n]["deps"])
        row[n] = r
        return r

    for n in crates:
        depth(n)
    return row


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render(crates, order):
    row = rows_of(crates)
    nrows = max(row.values()) + 1
    by_row = [[n for n in order if row[n] == r] for r in range(nrows)]
    width = max(len(r) for r in by_row) * (BOX_W + GAP_X) - GAP_X + 2 * MARGIN
    height = nrows * (BOX_H + GAP_Y) - GAP_Y + 2 * MARGIN + 30
    pos = {}
    for r, names in enumerate(by_row):
        y = MARGIN + (nrows - 1 - r) * (BOX_H + GAP_Y)
        total = len(names) * (BOX_W + GAP_X) - GAP_X
        x0 = (width - total) / 2
        for i, n in enumerate(names):
            pos[n] = (x0 + i * (BOX_W + GAP_X), y)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="sans-serif" font-size="13">',
        "  <title>raftkv workspace crates: an arrow points from a crate to a crate it depends on"
        " (drawn by hack/crates-svg.py from the Cargo.toml files)</title>",
        '  <defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
        'markerHeight="8" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>',
        f'  <rect x="0" y="0" width="{width:.0f}" height="{height:.0f}" fill="#ffffff"/>',
        '  <g stroke="#555" stroke-width="1.3" fill="none" marker-end="url(#arrow)">',
    ]
    for n in order:
        x, y = pos[n]
        deps = sorted(crates[n]["deps"], key=order.index)
        for k, d in enumerate(deps):
            dx, dy = pos[d]
            sx = x + BOX_W * (k + 1) / (len(deps) + 1)
            out.append(f'    <line x1="{sx:.1f}" y1="{y + BOX_H:.1f}" x2="{dx + BOX_W / 2:.1f}" y2="{dy:.1f}"/>')
    out.append("  </g>")
    for n in order:
        x, y = pos[n]
        c = crates[n]
        bins = " · bin " + ", ".join(c["bins"]) if c["bins"] else ""
        out.append(f'  <g><title>{esc(c["desc"] or n)}</title>')
        out.append(f'    <rect x="{x:.1f}" y="{y:.1f}" width="{BOX_W}" height="{BOX_H}" rx="6" '
                   f'fill="{"#e8f0fb" if c["bins"] else "#f4f4f4"}" stroke="#333"/>')
        out.append(f'    <text x="{x + 10:.1f}" y="{y + 21:.1f}" font-weight="bold">{esc(c["dir"])}/</text>')
        out.append(f'    <text x="{x + 10:.1f}" y="{y + 40:.1f}" font-size="11">{esc(n + bins)}</text>')
        out.append("  </g>")
    out.append(f'  <text x="{MARGIN}" y="{height - 12:.0f}" font-size="12">An arrow points from a crate to a '
               "workspace crate it depends on; blue boxes build binaries. Drawn from the Cargo.toml files "
               "by hack/crates-svg.py.</text>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    crates, order = load()
    svg = render(crates, order)
    if sys.argv[1:] == ["--check"]:
        if not OUT.exists() or OUT.read_text() != svg:
            print(f"{OUT.relative_to(ROOT)} is out of date: run python3 hack/crates-svg.py", file=sys.stderr)
            sys.exit(1)
        print(f"{OUT.relative_to(ROOT)}: current ({len(crates)} crates)")
        return
    if sys.argv[1:]:
        sys.exit(__doc__)
    OUT.write_text(svg)
    print(f"wrote {OUT.relative_to(ROOT)} ({len(crates)} crates)")


if __name__ == "__main__":
    main()
