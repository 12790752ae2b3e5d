#!/usr/bin/env python3
"""Hardware-aware training against plain training, both evaluated on the same unseen device seeds.

From trained ResNet-20 weights W, the same short fine-tuning recipe runs twice: plain (float) and
through the crossbars of a preset (`xbar train --hw P --hw-mode aware`, a new device sample every step,
device seeds from 1e9 on).  W, the plain and the hardware-aware weights are then evaluated on the preset
with `xbar eval --hw P --seeds K --seed 1` (seeds 1..K, never seen in training).  The plain fine-tuning
is the control: it separates the effect of training through the hardware from that of training longer.

    /usr/bin/python3 scripts/hwa_table.py --weights W.safetensors [--presets reram-64-variation,...]
        [--epochs 2] [--seeds 5] [--out runs/hwa] [--threads 1] [--train-limit N] [--limit N]

Resumable: finished runs are skipped; prints the markdown table with the commands.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runlib import ROOT, XBAR, rel, sh as sh_  # noqa: E402


def sh(cmd):
    return sh_(cmd, "hwa_table")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", required=True)
    ap.add_argument("--presets", default="reram-64-variation,reram-64-mild-variation")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "hwa"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--train-limit", type=int, default=0)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--data")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    resf = os.path.join(args.out, "results.json")
    res = json.load(open(resf)) if os.path.exists(resf) else {}
    common = ["--threads", str(args.threads)] + (["--data", args.data] if args.data else [])

    def train(name, extra):
        d = os.path.join(args.out, name)
        cmd = [XBAR, "train", "--model", "resnet20", "--weights", args.weights, "--epochs", str(args.epochs),
               "--lr", str(args.lr), "--schedule", "cosine", "--nesterov", "--momentum", "0.9", "--weight-decay", "5e-4",
               "--batch", "128", "--eval-limit", "1000", "--out", d, "--json", "--quiet"] + common + extra
        if args.train_limit:
            cmd += ["--train-limit", str(args.train_limit)]
        if os.path.exists(os.path.join(d, "checkpoint.safetensors")):
            cmd = [c for c in cmd if c != args.weights and c != "--weights"] + [
                "--resume", os.path.join(d, "checkpoint.safetensors")]
        j = sh(cmd)
        return {"weights": os.path.join(d, "weights.safetensors"), "command": rel(cmd), "seconds": j["run_seconds"]}

    def evaluate(w, preset):
        cmd = [XBAR, "eval", "--model", "resnet20", "--weights", w, "--hw",
               os.path.join(ROOT, "configs", "hw", preset + ".cfg"), "--seeds", str(args.seeds), "--seed", "1",
               "--json", "--quiet"] + common + (["--limit", str(args.limit)] if args.limit else [])
        j = sh(cmd)
        return {"sw": j["software"]["accuracy"], "mean": j["hardware"]["accuracy_mean"],
                "std": j["hardware"]["accuracy_std"], "command": rel(cmd)}

    if "plain" not in res:
        res["plain"] = train("plain", [])
        json.dump(res, open(resf, "w"), indent=1)
    for p in args.presets.split(","):
        r = res.setdefault(p, {})
        if "hwa" not in r:
            r["hwa"] = train("hwa-" + p, ["--hw", os.path.join(ROOT, "configs", "hw", p + ".cfg"), "--hw-mode", "aware",
                                           "--hw-resample", "step"])
        for k, w in (("base", args.weights), ("plain_eval", res["plain"]["weights"]), ("hwa_eval", r["hwa"]["weights"])):
            if k not in r:
                r[k] = evaluate(w, p)
        json.dump(res, open(resf, "w"), indent=1)
    print("| preset (seeds 1..%d) | trained weights | + plain fine-tuning | + hardware-aware fine-tuning |" % args.seeds)
    print("|---|---|---|---|")
    for p in args.presets.split(","):
        r = res[p]
        f = lambda k: "%.2f ± %.2f (float %.2f)" % (100 * r[k]["mean"], 100 * r[k]["std"], 100 * r[k]["sw"])
        print("| %s | %s | %s | %s |" % (p, f("base"), f("plain_eval"), f("hwa_eval")))
    print("\nfine-tuning: `%s` (%.0f s); `%s` (%.0f s)" % (res["plain"]["command"], res["plain"]["seconds"],
                                                          r["hwa"]["command"], r["hwa"]["seconds"]))


if __name__ == "__main__":
    main()
