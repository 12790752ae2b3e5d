#!/usr/bin/env python3
"""Pruning while training (methods.md 10A, 10B; docs/pruning.md): one recipe, one run per row from scratch
on CIFAR-10, filters removed by real surgery at epoch starts (`xbar train --prune`), against the unpruned run
of the same recipe.  Rows: unpruned, then each score (l1, mean-act, random: every layer to the same fraction,
as 10A; frs, taylor: one global ranking with per-layer floors, as 10B) at 80% and 50% of the filters.

    /usr/bin/python3 scripts/prune_table.py [--epochs 10] [--start 2] [--every 1] [--steps 4] [--lr 0.05]
        [--model configs/exp/cnn-s.cfg] [--out runs/prune] [--threads 1] [--rows unpruned,l1-80,...]
        [--plot FILE.svg]

Resumable: finished rows are skipped, an interrupted one continues from its checkpoint.  Prints the markdown
table with the commands: test accuracy of the exported model.cfg + weights on all 10,000 test images,
filters left, forward MACs per image, parameters, training MACs against the unpruned run's.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runlib import ROOT, SGD_RECIPE, XBAR, common_flags, rel, results, sh as sh_  # noqa: E402


def sh(cmd):
    return sh_(cmd, "prune_table")


SCORES = ("l1", "mean-act", "random", "frs", "taylor")
ROWS = {"unpruned": []}
for pct in (80, 50):
    for sc in SCORES:
        ROWS["%s-%d" % (sc, pct)] = ["--prune", sc, "--prune-target", "%.2f" % (pct / 100)]
ORDER = ["unpruned"] + ["%s-80" % s for s in SCORES] + ["%s-50" % s for s in SCORES]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--start", type=int, default=2)
    ap.add_argument("--every", type=int, default=1)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "prune"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rows", default=",".join(ORDER))
    ap.add_argument("--model", default=os.path.join(ROOT, "configs", "exp", "cnn-s.cfg"))
    ap.add_argument("--data")
    ap.add_argument("--plot")
    args = ap.parse_args()
    res, save = results(args.out)
    common = common_flags(args)
    rows = args.rows.split(",")
    for name in rows:
        if name not in ROWS:
            sys.exit("prune_table: row '%s' is unknown. HINT: rows are %s" % (name, ",".join(ORDER)))
        if name in res:
            continue
        d = os.path.join(args.out, name)
        sched = ["--prune-start", str(args.start), "--prune-every", str(args.every), "--prune-steps", str(args.steps)]
        cmd = [XBAR, "train", "--model", args.model, "--epochs", str(args.epochs), "--lr", str(args.lr)] + SGD_RECIPE + \
            ["--out", d, "--json", "--quiet"] + common + ROWS[name] + (sched if ROWS[name] else [])
        ck = os.path.join(d, "checkpoint.safetensors")
        j = sh(cmd + (["--resume", ck] if os.path.exists(ck) else []))
        mcfg = os.path.join(d, "model.cfg") if ROWS[name] else args.model
        ev = sh([XBAR, "eval", "--model", mcfg, "--weights", os.path.join(d, "weights.safetensors"), "--json",
                 "--quiet"] + common)
        info = sh([XBAR, "info", "--model", mcfg, "--json"])
        res[name] = {"command": rel(cmd), "seconds": j["seconds"], "test_acc": ev["accuracy"],
                     "pruning": j.get("pruning"), "macs": info.get("macs"), "params": info.get("params")}
        save()

    base = res.get("unpruned")
    print("| run | scope | test accuracy | vs unpruned | filters left | MACs per image | parameters | training MACs "
          "saved | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in rows:
        if name not in res:
            continue
        r, p = res[name], res[name]["pruning"]
        d = "%+.2f" % (100 * (r["test_acc"] - base["test_acc"])) if base else "-"
        if p:
            print("| %s | %s | %.2f%% | %s | %d of %d | %.3g (%.1f%% fewer) | %d (%.2fx fewer) | %.1f%% | %.0f |" % (
                name, p["scope"], 100 * r["test_acc"], d, p["channels"], p["channels_start"], p["macs"],
                100 * p["flops_reduction"], p["params"], p["compression"], 100 * p["train_macs_saved"], r["seconds"]))
        else:
            print("| %s | - | %.2f%% | - | all | %.3g | %s | 0 | %.0f |" % (name, 100 * r["test_acc"], r["macs"] or 0,
                                                                       r["params"], r["seconds"]))
    print("\ncommands: " + "; ".join("`%s`" % res[n]["command"] for n in rows if n in res))
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 4))
        for sc in SCORES:
            pts = [(res[k]["pruning"]["train_macs_saved"], 100 * res[k]["test_acc"]) for k in
                   ("%s-50" % sc, "%s-80" % sc) if k in res]
            if pts:
                ax.plot([100 * a for a, _ in pts], [b for _, b in pts], "o-", label=sc)
        if base:
            ax.axhline(100 * base["test_acc"], color="k", ls="--", label="unpruned")
        ax.set_xlabel("training MACs saved against the unpruned run (%)")
        ax.set_ylabel("test accuracy (%)")
        ax.legend()
        ax.set_title("pruning while training, %s, %d epochs" % (os.path.basename(args.model), args.epochs))
        fig.tight_layout()
        fig.savefig(args.plot)


if __name__ == "__main__":
    main()
