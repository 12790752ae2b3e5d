#!/usr/bin/env python3
"""plot_training.py -- test accuracy and training loss per epoch from `xbar train --json` output.

    /usr/bin/python3 scripts/plot_training.py LOG.jsonl [OUT.svg]

Reads the per-epoch JSON lines (epoch, train_loss, train_acc, test_acc, seconds), prints a table and
writes a small self-contained SVG plot (no plotting library needed).
"""
import json
import sys


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    rows = []
    for line in open(sys.argv[1]):
        line = line.strip()
        if line.startswith("{") and '"epoch"' in line:
            rows.append(json.loads(line))
    if not rows:
        sys.exit(f"{sys.argv[1]}: no per-epoch JSON lines (run xbar train with --json)")
    print(f"{'epoch':>5} {'train loss':>10} {'train acc':>9} {'test acc':>8} {'hours':>6}")
    for r in rows:
        ta = r["test_acc"]
        print(f"{r['epoch']:>5} {r['train_loss']:>10.4f} {100 * r['train_acc']:>8.2f}% "
              f"{'' if ta is None else f'{100 * ta:.2f}%':>8} {r['seconds'] / 3600:>6.2f}")
    if len(sys.argv) < 3:
        return
    W, H, L, B = 640, 360, 50, 40
    n = max(r["epoch"] for r in rows)
    x = lambda e: L + (W - L - 20) * (e / max(n, 1))
    y = lambda a: H - B - (H - B - 20) * a
    pts = " ".join(f"{x(r['epoch']):.1f},{y(r['test_acc']):.1f}" for r in rows if r["test_acc"] is not None)
    tr = " ".join(f"{x(r['epoch']):.1f},{y(r['train_acc']):.1f}" for r in rows)
    grid = "".join(f'<line x1="{L}" x2="{W - 20}" y1="{y(a / 10):.1f}" y2="{y(a / 10):.1f}" stroke="#ddd"/>'
                   f'<text x="{L - 6}" y="{y(a / 10) + 4:.1f}" font-size="11" text-anchor="end">{a * 10}%</text>'
                   for a in range(0, 11))
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif">'
           f'<rect width="{W}" height="{H}" fill="white"/>{grid}'
           f'<polyline points="{tr}" fill="none" stroke="#999" stroke-width="2"/>'
           f'<polyline points="{pts}" fill="none" stroke="#c22" stroke-width="2"/>'
           f'<text x="{W / 2}" y="{H - 8}" font-size="12" text-anchor="middle">epoch (of {n})</text>'
           f'<text x="{L + 10}" y="16" font-size="12" fill="#c22">test accuracy</text>'
           f'<text x="{L + 120}" y="16" font-size="12" fill="#999">train accuracy (augmented)</text></svg>\n')
    open(sys.argv[2], "w").write(svg)


if __name__ == "__main__":
    main()
