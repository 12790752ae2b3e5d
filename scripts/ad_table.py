#!/usr/bin/env python3
"""Activation-density (AD) mixed precision during training (Vasquez et al. 2021, arXiv 2101.04354;
methods.md item 1, its quick experiment 1g): one recipe, three runs from scratch on CIFAR-10:

    16-bit   every layer's weights and activations at 16 bits for the whole run
    4-bit    every layer at 4 bits for the whole run
    AD       every layer starts at 16 bits; when a relu's AD has settled, its quantizer's and its
             layer's weights' bits become max(2, ceil(AD x bits)) (xbar train --ad-precision)
    AD + AD pruning   the same, and at each plateau the convolution before the relu keeps ceil(AD x
             channels) filters (--ad-prune): the model shrinks while it trains
    AD + AD pruning, one cut per layer   --ad-prune-cuts 1

All three track AD (the fixed ones with --ad-tol 0, so that their bits never move), so each reports its
MACs weighted by weight x input bits against 16 x 16 and its training compute against a 16-bit run's.
The model is CNN-S of methods.md S8 (configs/exp/cnn-s.cfg; the paper's VGG19 and ResNet18 are too
large for a 2-core machine).  Test accuracy is the exported model's on all 10,000 test images.

    /usr/bin/python3 scripts/ad_table.py [--epochs 15] [--lr 0.05] [--out runs/ad] [--threads 1]
        [--rows 16bit,4bit,ad,adprune,adprune1] [--plot FILE.svg]

Resumable: finished runs are skipped, an interrupted one continues from its checkpoint.  Prints the
markdown tables with the commands.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runlib import ROOT, SGD_RECIPE, XBAR, common_flags, rel, results, sh as sh_  # noqa: E402


def sh(cmd):
    return sh_(cmd, "ad_table")
ROWS = {
    "16bit": ("16-bit", ["--ad-precision", "--ad-tol", "0"]),
    "4bit": ("4-bit", ["--weight-bits", "4", "--act-bits", "4", "--ad-precision", "--ad-tol", "0"]),
    "ad": ("AD (from 16 bits)", ["--ad-precision"]),
    "adstart": ("AD, bits from the starting 16 at each plateau", ["--ad-precision", "--ad-rule", "start"]),
    "adprune": ("AD + AD pruning", ["--ad-precision", "--ad-prune"]),
    "adprune1": ("AD + AD pruning, one cut per layer", ["--ad-precision", "--ad-prune", "--ad-prune-cuts", "1"]),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "ad"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--model", default=os.path.join(ROOT, "configs", "exp", "cnn-s.cfg"))
    ap.add_argument("--data")
    ap.add_argument("--plot")
    args = ap.parse_args()
    res, save = results(args.out)
    common = common_flags(args)
    rows = args.rows.split(",")
    for name in rows:
        if name not in ROWS:
            sys.exit("ad_table: row '%s' is unknown. HINT: rows are %s" % (name, ",".join(ROWS)))
        if name in res:
            continue
        d = os.path.join(args.out, name)
        cmd = [XBAR, "train", "--model", args.model, "--epochs", str(args.epochs), "--lr", str(args.lr)] + SGD_RECIPE + \
            ["--out", d, "--json", "--quiet"] + common + ROWS[name][1]
        ck = os.path.join(d, "checkpoint.safetensors")
        j = sh(cmd + (["--resume", ck] if os.path.exists(ck) else []))
        ev = sh([XBAR, "eval", "--model", os.path.join(d, "model.cfg"), "--weights", os.path.join(d, "weights.safetensors"),
                 "--json", "--quiet"] + common)
        res[name] = {"command": rel(cmd), "seconds": j["seconds"], "test_acc": ev["accuracy"], "ad": j["ad_precision"]}
        save()

    print("| run | test accuracy | MACs x bits against 16-bit | training compute against 16-bit | parameters | "
          "MACs per image | seconds |")
    print("|---|---|---|---|---|---|---|")
    for name in rows:
        r, a = res[name], res[name]["ad"]
        pr = "%d (%.2fx fewer)" % (a["params"], a["params_start"] / a["params"]) if "params" in a else "-"
        mc = "%.3g (%.2fx fewer)" % (a["macs"], a["macs_start"] / a["macs"]) if "macs" in a else "-"
        print("| %s | %.2f%% | %.2fx fewer | %.2f | %s | %s | %.0f |" % (ROWS[name][0], 100 * r["test_acc"],
                                                                      a["mac_reduction"], a["training_compute_ratio"],
                                                                      pr, mc, r["seconds"]))
    for key in ("ad", "adstart", "adprune", "adprune1"):
        if key not in res:
            continue
        a = res[key]["ad"]
        print("\n%s run, per layer: AD per epoch and bits in force per epoch; final bits (weights and the quantizer "
              "after the relu)" % ROWS[key][0])
        print("| relu | layer | AD, first -> last epoch | bits per epoch | final bits |")
        print("|---|---|---|---|---|")
        for u in a["layers"]:
            print("| %s | %s | %.3f -> %.3f | %s | %d |" % (u["relu"], u["layer"], u["ad"][0], u["ad"][-1],
                                                         " ".join(str(b) for b in u["bits_per_epoch"]), u["bits"]))
    print("\ncommands: " + "; ".join("`%s`" % res[n]["command"] for n in rows))
    if args.plot and "ad" in res:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        a = res["ad"]["ad"]
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
        for u in a["layers"]:
            e = range(1, len(u["ad"]) + 1)
            ax1.plot(e, u["ad"], label=u["layer"])
            ax2.step(e, u["bits_per_epoch"], where="post", label=u["layer"])
        ax1.set_xlabel("epoch")
        ax1.set_ylabel("activation density")
        ax2.set_xlabel("epoch")
        ax2.set_ylabel("bits in force")
        ax2.legend(fontsize=8)
        fig.suptitle("AD-driven precision, %s" % os.path.basename(args.model))
        fig.tight_layout()
        fig.savefig(args.plot)


if __name__ == "__main__":
    main()
