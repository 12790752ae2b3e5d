#!/usr/bin/env python3
"""Accuracy table of a trained resnet20 on the crossbar presets (docs/crossbar-eval.md).

Runs `xbar eval --hw` for every preset (and for the parasitic presets once more with
`[output] gain_calibration = per_layer`), keeps each run's JSON report in OUT, and prints the
markdown table with the command behind every row.  Runs whose JSON is already in OUT are not
repeated, so an interrupted table resumes.

  scripts/crossbar_table.py --weights runs/resnet20/weights.safetensors [--out runs/crossbar]
                            [--threads N] [--data DIR] [--quick] [--presets a,b,...]

--quick: 1000 images and 2 seeds everywhere (a few minutes), to check the set-up.
Standard library only; needs build/xbar (make).
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (preset, seeds, images or 0 for the whole test set, with a gain-calibrated twin)
FOLDED = [
    ("ideal", 5, 0, False),
    ("reram-64-mild", 5, 0, True),
    ("reram-128-mild", 5, 0, True),
    ("reram-64-stress", 5, 0, True),
    ("reram-64-variation", 5, 0, False),
    ("reram-64-mild-variation", 5, 0, True),
    ("reram-128-mild-variation", 5, 0, True),
    ("reram-64-readnoise", 3, 2000, False),
    ("neat-64", 5, 0, True),
]
TILED = [  # converters run the tiled path, 7-200x the float cost per image (docs/crossbar-eval.md)
    ("bn2023-128", 3, 1000, True),
    ("txsim-64", 3, 1000, False),
    ("reram-64-full", 2, 500, False),
]


def gain_cfg(preset, out):
    """The preset with a per-layer digital gain calibration appended."""
    src = os.path.join(ROOT, "configs", "hw", preset + ".cfg")
    dst = os.path.join(out, preset + "-gain.cfg")
    with open(src) as f:
        lines = f.read().splitlines()
    at = [i for i, l in enumerate(lines) if l.strip() == "[output]"]
    if at:  # sections may appear once: add the key to the preset's own [output]
        lines.insert(at[0] + 1, "gain_calibration = per_layer")
    else:
        lines += ["", "[output]", "gain_calibration = per_layer"]
    with open(dst, "w") as g:
        g.write("\n".join(lines) + "\n")
    return dst


def run(args, label, cfg, seeds, images):
    path = os.path.join(args.out, label + ".json")
    cmd = [os.path.join(ROOT, "build", "xbar"), "eval", "--model", "resnet20", "--weights", args.weights,
           "--hw", cfg, "--seeds", str(seeds), "--json"]
    if images:
        cmd += ["--limit", str(images)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.data:
        cmd += ["--data", args.data]
    shown = " ".join(shlex.quote(os.path.relpath(c, ROOT) if c.startswith(ROOT + "/") else c) for c in cmd[1:])
    if not os.path.exists(path):
        t0 = time.time()
        print(f"[{label}] {shown}", file=sys.stderr, flush=True)
        res = subprocess.run(cmd, stdout=subprocess.PIPE)
        if res.returncode != 0:
            sys.exit(f"crossbar_table: {label} failed (exit {res.returncode}); command: {shown}")
        with open(path + ".tmp", "wb") as f:
            f.write(res.stdout)
        os.replace(path + ".tmp", path)
        print(f"[{label}] done in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    with open(path) as f:
        return json.load(f), "build/xbar " + shown


def row(label, rep, cmd, gains):
    sw, hw, layers = rep["software"], rep["hardware"], rep["layers"]
    mapped = [l for l in layers if l.get("mapped")]
    err = [l["rel_error"] for l in mapped]
    cells = [f"`{label}`", str(rep["images"]), str(rep["seeds"]), f"{100 * sw['accuracy']:.2f}",
             f"{100 * hw['accuracy_mean']:.2f} ± {100 * hw['accuracy_std']:.2f}",
             " ".join(f"{100 * a:.2f}" for a in hw["accuracy"]),
             f"{min(err):.3f}–{max(err):.3f}" if err else "-"]
    if gains:
        g = [l["gain"] for l in mapped]
        cells.append(f"{min(g):.2f}–{max(g):.2f}")
    return "| " + " | ".join(cells) + " |", cmd


def table(title, rows, gains):
    head = ["preset", "images", "seeds", "float acc. %", "crossbar acc. % (mean ± std)", "per seed",
            "rel. error per layer"] + (["gains"] if gains else [])
    print(f"\n{title}\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r, _ in rows:
        print(r)
    print("\nCommands:\n\n```")
    for _, c in rows:
        print(c)
    print("```")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", required=True, help="trained resnet20 weights (.safetensors)")
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "crossbar"), help="directory for the JSON reports")
    ap.add_argument("--threads", type=int, default=0, help="threads (default: xbar's, all cores)")
    ap.add_argument("--data", default="", help="CIFAR-10 directory (default: xbar's search)")
    ap.add_argument("--quick", action="store_true", help="1000 images, 2 seeds everywhere")
    ap.add_argument("--presets", default="", help="comma-separated subset of the presets (default: all)")
    args = ap.parse_args()
    if not os.path.exists(os.path.join(ROOT, "build", "xbar")):
        sys.exit("crossbar_table: build/xbar not found. HINT: run `make` first.")
    if not os.path.exists(args.weights):
        sys.exit(f"crossbar_table: {args.weights}: no such file. HINT: train with scripts/train_resnet20.sh.")
    args.weights = os.path.abspath(args.weights)
    os.makedirs(args.out, exist_ok=True)
    plain, gained = [], []
    chosen = [p for p in args.presets.split(",") if p]
    known = [p[0] for p in FOLDED + TILED]
    for p in chosen:
        if p not in known:
            sys.exit(f"crossbar_table: --presets: unknown preset '{p}'. HINT: one of {', '.join(known)}.")
    for preset, seeds, images, with_gain in FOLDED + TILED:
        if chosen and preset not in chosen:
            continue
        if args.quick:
            seeds, images = 2, 1000
        cfg = os.path.join(ROOT, "configs", "hw", preset + ".cfg")
        rep, cmd = run(args, preset, cfg, seeds, images)
        plain.append(row(preset, rep, cmd, False))
        if with_gain:
            rep, cmd = run(args, preset + "-gain", gain_cfg(preset, args.out), seeds, images)
            gained.append(row(preset, rep, cmd, True))
    table("Presets as shipped:", plain, False)
    table("With `gain_calibration = per_layer` added to the preset's `[output]` "
          f"(the configs are written to {args.out}/PRESET-gain.cfg):", gained, True)


if __name__ == "__main__":
    main()
