#!/usr/bin/env python3
"""Quantized ResNet-20 on CIFAR-10: float, 8, 4 and 2 bits, binary and the three ternary systems, in
software and on crossbars whose weight bits match each model.

Every row fine-tunes the same trained float weights W with one short recipe (quantization-aware training
from a trained model, as is usual): `xbar train --weights W --epochs E --lr LR --schedule cosine` plus the
row's quantization, with one scale per layer (weight_scale = tensor, so a crossbar's one scale per layer
maps the codes exactly) and the first and last layers at 8 bits.  The float row runs the same recipe
without quantizers (the control).  Each result is then tested on all test images in software (xbar eval
--model OUT/model.cfg --weights OUT/weights.safetensors) and on crossbar presets with [mapping]
weight_bits set to the model's magnitude bits (b - 1 for b-bit uniform weights, 1 for binary and
ternary; differential pairs carry the sign), K device seeds each.

    /usr/bin/python3 scripts/quant_table.py --weights W.safetensors [--epochs 3] [--lr 0.02]
        [--rows float,w8a8,...] [--presets ideal,reram-64-mild,reram-64-variation] [--seeds 2]
        [--out runs/quant] [--threads 1] [--limit N] [--hw-limit N] [--plot FILE.svg]

Resumable: finished runs and evaluations are skipped (results.json in --out); an interrupted training
continues from its checkpoint.  Prints the markdown table with the commands.
"""
import argparse
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runlib import ROOT, XBAR, rel, sh as sh_  # noqa: E402


def sh(cmd):
    return sh_(cmd, "quant_table")

# name: (label, quantization config text or None, crossbar weight bits)
ROWS = {
    "float": ("float", None, 8),
    "w8a8": ("8-bit weights and activations", "weight = uniform\nweight_bits = 8\nact_bits = 8\n", 7),
    "w4a4": ("4-bit weights and activations", "weight = uniform\nweight_bits = 4\nact_bits = 4\n", 3),
    "w2a2": ("2-bit weights and activations", "weight = uniform\nweight_bits = 2\nact_bits = 2\n", 1),
    "binary": ("binary weights, 4-bit activations", "weight = binary\nact_bits = 4\n", 1),
    "ternary": ("ternary {-1,0,1}, 4-bit activations", "weight = ternary\nact_bits = 4\n", 1),
    "ternary-sym": ("ternary {-a,0,a} (TWN), 4-bit activations", "weight = ternary-sym\nact_bits = 4\n", 1),
    "ternary-asym": ("ternary {-a,0,b}, 4-bit activations", "weight = ternary-asym\nact_bits = 4\n", 1),
}


def hw_cfg(out, preset, bits):
    """the preset with [mapping] weight_bits = bits (and bits_per_cell = bits: one cell per sign)"""
    src = open(os.path.join(ROOT, "configs", "hw", preset + ".cfg")).read()
    lines, sec, done = [], None, False
    for line in src.splitlines():
        m = re.match(r"\s*\[(\w+)\]", line)
        if m:
            if sec == "mapping" and not done:
                lines += ["weight_bits = %d" % bits, "bits_per_cell = %d" % bits]
                done = True
            sec = m.group(1)
        if sec == "mapping" and re.match(r"\s*(weight_bits|bits_per_cell|levels)\s*=", line):
            continue
        lines.append(line)
    if not done:
        if sec != "mapping":
            lines.append("[mapping]")
        lines += ["weight_bits = %d" % bits, "bits_per_cell = %d" % bits]
    p = os.path.join(out, "hw-%s-w%d.cfg" % (preset, bits))
    open(p, "w").write("\n".join(lines) + "\n")
    return p


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", required=True)
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--presets", default="ideal,reram-64-mild,reram-64-variation")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "quant"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--limit", type=int, default=0, help="test images in software (0: all)")
    ap.add_argument("--hw-limit", type=int, default=0, help="test images on the crossbars (0: all)")
    ap.add_argument("--data")
    ap.add_argument("--plot")
    args = ap.parse_args()
    for r in args.rows.split(","):
        if r not in ROWS:
            sys.exit("quant_table: row '%s' is unknown. HINT: rows are %s" % (r, ",".join(ROWS)))
    os.makedirs(args.out, exist_ok=True)
    resf = os.path.join(args.out, "results.json")
    res = json.load(open(resf)) if os.path.exists(resf) else {}
    common = ["--threads", str(args.threads)] + (["--data", args.data] if args.data else [])
    lim = ["--limit", str(args.limit)] if args.limit else []
    hlim = ["--limit", str(args.hw_limit)] if args.hw_limit else []
    presets = args.presets.split(",")

    for name in args.rows.split(","):
        label, qtext, wbits = ROWS[name]
        r = res.setdefault(name, {})
        d = os.path.join(args.out, name)
        os.makedirs(d, exist_ok=True)
        if "train" not in r:
            cmd = [XBAR, "train", "--model", "resnet20", "--weights", args.weights, "--epochs", str(args.epochs),
                   "--lr", str(args.lr), "--schedule", "cosine", "--nesterov", "--momentum", "0.9",
                   "--weight-decay", "5e-4", "--batch", "128", "--eval-limit", "1000", "--out", d, "--json",
                   "--quiet"] + common
            if qtext:
                qf = os.path.join(d, "quant.cfg")
                open(qf, "w").write("[quantize]\n" + qtext + "weight_scale = tensor\nfirst_bits = 8\nlast_bits = 8\n")
                cmd += ["--quant-config", qf]
            ck = os.path.join(d, "checkpoint.safetensors")
            run = cmd
            if os.path.exists(ck):
                run = [c for c in cmd if c not in (args.weights, "--weights")] + ["--resume", ck]
            j = sh(run)
            r["train"] = {"command": rel(cmd), "seconds": j["run_seconds"], "epochs": j["epochs"]}
            json.dump(res, open(resf, "w"), indent=1)
        model = os.path.join(d, "model.cfg") if qtext else "resnet20"
        w = os.path.join(d, "weights.safetensors")
        if "sw" not in r:
            j = sh([XBAR, "eval", "--model", model, "--weights", w, "--json", "--quiet"] + common + lim)
            r["sw"] = j["accuracy"]
            json.dump(res, open(resf, "w"), indent=1)
        if "sw_hw" not in r: # the software model on the images the crossbar columns test
            j = sh([XBAR, "eval", "--model", model, "--weights", w, "--json", "--quiet"] + common + hlim)
            r["sw_hw"] = j["accuracy"]
            json.dump(res, open(resf, "w"), indent=1)
        for p in presets:
            if p in r:
                continue
            hp = hw_cfg(args.out, p, wbits)
            cmd = [XBAR, "eval", "--model", model, "--weights", w, "--hw", hp, "--seeds", str(args.seeds), "--seed",
                   "1", "--json", "--quiet", "--no-software"] + common + hlim
            j = sh(cmd)
            r[p] = {"mean": j["hardware"]["accuracy_mean"], "std": j["hardware"]["accuracy_std"], "command": rel(cmd)}
            json.dump(res, open(resf, "w"), indent=1)

    nh = args.hw_limit or 10000
    print("| model | software, all test images | software, first %d | " % nh +
          " | ".join("%s, first %d" % (p, nh) for p in presets) + " |")
    print("|---|---|---|" + "---|" * len(presets))
    for name in args.rows.split(","):
        r = res[name]
        cells = ["%.2f ± %.2f" % (100 * r[p]["mean"], 100 * r[p]["std"]) for p in presets]
        print("| %s | %.2f | %.2f | %s |" % (ROWS[name][0], 100 * r["sw"], 100 * r["sw_hw"], " | ".join(cells)))
    print("\nrecipe (every row): `%s` (float row without --quant-config)" % res[args.rows.split(",")[-1]]["train"]["command"])
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        names = args.rows.split(",")
        fig, ax = plt.subplots(figsize=(9, 4))
        wdt = 0.8 / (1 + len(presets))
        for k, p in enumerate(["sw"] + presets):
            ys = [100 * (res[n][p] if p == "sw" else res[n][p]["mean"]) for n in names]
            ax.bar([i + k * wdt for i in range(len(names))], ys, wdt, label="software" if p == "sw" else p)
        ax.set_xticks([i + 0.4 - wdt / 2 for i in range(len(names))])
        ax.set_xticklabels(names, rotation=20)
        ax.set_ylabel("CIFAR-10 test accuracy (%)")
        ax.set_title("ResNet-20, quantization-aware fine-tuning (%d epochs)" % args.epochs)
        ax.legend(loc="center left", bbox_to_anchor=(1, 0.5))
        fig.tight_layout()
        fig.savefig(args.plot)


if __name__ == "__main__":
    main()
