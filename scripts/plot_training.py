#!/usr/bin/env python3
"""plot_training.py -- test and train accuracy and training loss per epoch from `xbar train --json` output.

    /usr/bin/python3 scripts/plot_training.py [--markdown] LOG.jsonl [OUT.svg]

Reads the per-epoch JSON lines (epoch, train_loss, train_acc, test_acc, seconds, and swa_test_acc in the
epochs of --swa-epochs), prints a table and writes a small self-contained SVG plot (no plotting library
needed).  --markdown prints instead the table docs/training.md shows: epoch 1, every 5th epoch and the
last 10, then the best epoch (and the last SWA figure).
"""
import json
import sys


def pct(a):
    return "" if a is None else f"{100 * a:.2f}%"


def markdown(rows):
    last = rows[-1]["epoch"]
    swa = any("swa_test_acc" in r for r in rows)
    print("| epoch | train loss | train acc | test acc |" + (" SWA test acc |" if swa else "") +
          " seconds (cumulative) |")
    print("|---|---|---|---|" + ("---|" if swa else "") + "---|")
    for r in rows:
        e = r["epoch"]
        if e == 1 or e % 5 == 0 or e > last - 10:
            print(f"| {e} | {r['train_loss']:.4f} | {pct(r['train_acc'])} | {pct(r['test_acc'])} |" +
                  (f" {pct(r.get('swa_test_acc'))} |" if swa else "") + f" {r['seconds']:.0f} s |")
    tested = [r for r in rows if r["test_acc"] is not None]
    if tested:
        best = max(tested, key=lambda r: r["test_acc"])
        print(f"\nbest: epoch {best['epoch']}, {pct(best['test_acc'])}; last: epoch {last}, "
              f"{pct(rows[-1]['test_acc'])}, {rows[-1]['seconds']:.0f} s")
    sw = [r for r in rows if "swa_test_acc" in r]
    if sw:
        print(f"SWA: epoch {sw[-1]['epoch']}, {pct(sw[-1]['swa_test_acc'])} (average of {len(sw)} epochs' weights)")


def main():
    args = sys.argv[1:]
    md = "--markdown" in args
    args = [a for a in args if a != "--markdown"]
    if not args or len(args) > 2 or any(a.startswith("-") for a in args):
        sys.exit(__doc__)
    rows = []
    for line in open(args[0]):
        line = line.strip()
        if line.startswith("{") and '"epoch"' in line:
            rows.append(json.loads(line))
    if not rows:
        sys.exit(f"{args[0]}: no per-epoch JSON lines (run xbar train with --json)")
    if md:
        markdown(rows)
    else:
        print(f"{'epoch':>5} {'train loss':>10} {'train acc':>9} {'test acc':>8} {'hours':>6}")
        for r in rows:
            print(f"{r['epoch']:>5} {r['train_loss']:>10.4f} {pct(r['train_acc']):>9} "
                  f"{pct(r['test_acc']):>8} {r['seconds'] / 3600:>6.2f}" +
                  (f"  SWA {pct(r['swa_test_acc'])}" if "swa_test_acc" in r else ""))
    if len(args) < 2:
        return
    W, H, L, B = 640, 360, 50, 40
    n = max(r["epoch"] for r in rows)
    x = lambda e: L + (W - L - 20) * (e / max(n, 1))
    y = lambda a: H - B - (H - B - 20) * a
    pts = " ".join(f"{x(r['epoch']):.1f},{y(r['test_acc']):.1f}" for r in rows if r["test_acc"] is not None)
    tr = " ".join(f"{x(r['epoch']):.1f},{y(r['train_acc']):.1f}" for r in rows)
    sw = " ".join(f"{x(r['epoch']):.1f},{y(r['swa_test_acc']):.1f}" for r in rows if "swa_test_acc" in r)
    grid = "".join(f'<line x1="{L}" x2="{W - 20}" y1="{y(a / 10):.1f}" y2="{y(a / 10):.1f}" stroke="#ddd"/>'
                   f'<text x="{L - 6}" y="{y(a / 10) + 4:.1f}" font-size="11" text-anchor="end">{a * 10}%</text>'
                   for a in range(0, 11))
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif">'
           f'<rect width="{W}" height="{H}" fill="white"/>{grid}'
           f'<polyline points="{tr}" fill="none" stroke="#999" stroke-width="2"/>'
           f'<polyline points="{pts}" fill="none" stroke="#c22" stroke-width="2"/>' +
           (f'<polyline points="{sw}" fill="none" stroke="#26c" stroke-width="2"/>'
            f'<text x="{L + 330}" y="16" font-size="12" fill="#26c">SWA test accuracy</text>' if sw else '') +
           f'<text x="{W / 2}" y="{H - 8}" font-size="12" text-anchor="middle">epoch (of {n})</text>'
           f'<text x="{L + 10}" y="16" font-size="12" fill="#c22">test accuracy</text>'
           f'<text x="{L + 120}" y="16" font-size="12" fill="#999">train accuracy (augmented)</text></svg>\n')
    open(args[1], "w").write(svg)


if __name__ == "__main__":
    main()
