#!/usr/bin/env python3
"""Structured-sparse networks on non-ideal crossbars (methods.md 5A; docs/pruning.md): are highly sparse networks
hurt more by parasitics than dense ones, and do column rearrangement and weight-constrained training (WCT) help?

Models (CIFAR-10, one recipe): the dense network and its C/F-pruned versions at 50% and 80% of the filters from
scripts/prune_table.py (--prune-out; rows unpruned, l1-50, l1-80); XCS and XRS versions of the dense network
(tile segments of 64x64 arrays cut to 50% and 80% and fine-tuned, `xbar train --xprune`); and WCT versions of the
dense, C/F-80 and XCS-80 networks (fine-tuned with every layer clipped to its 90th percentile of |w|), mapped
with their own clip scale and, marked "@s0", with the scale of their weights before the clip (`xbar eval
--w-scales wct.json`: the narrower range then uses the lower part of the same conductance range).  Each is
evaluated on the parasitic presets (--hw) at two tile sizes (--tiles), its segments packed (XCS: pack = columns,
XRS: pack = rows), without and with column rearrangement (round-robin).  Reported: accuracy, the drop from the
model's own software accuracy, crossbars, the share of cells below mid-conductance and the mean relative error of
the layers' outputs.

    /usr/bin/python3 scripts/sparse_hw_table.py --prune-out runs/prune [--out runs/sparse-hw] [--epochs 2]
        [--hw configs/hw/reram-64-mild.cfg,configs/hw/reram-64-stress.cfg] [--tiles 32,64] [--limit 2000]
        [--threads 1] [--plot FILE.svg]

Resumable: finished fine-tunes and evaluations are skipped (results.json).  Prints markdown tables with the
commands.
"""
import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runlib import ROOT, SGD_RECIPE, XBAR, common_flags, rel, results, sh as sh_  # noqa: E402


def sh(cmd):
    return sh_(cmd, "sparse_hw_table")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prune-out", default=os.path.join(ROOT, "runs", "prune"))
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "sparse-hw"))
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--hw", default=",".join(os.path.join(ROOT, "configs", "hw", f) for f in
                                             ("reram-64-mild.cfg", "reram-64-stress.cfg")))
    ap.add_argument("--tiles", default="32,64")
    ap.add_argument("--limit", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", default=os.path.join(ROOT, "configs", "exp", "cnn-s.cfg"))
    ap.add_argument("--data")
    ap.add_argument("--plot")
    args = ap.parse_args()
    res, save = results(args.out, {"models": {}, "evals": {}})
    common = common_flags(args)

    # the models: (name, model .cfg, weights, pack)
    models = []
    src = {"dense": "unpruned", "cf-50": "l1-50", "cf-80": "l1-80"}
    for name, row in src.items():
        d = os.path.join(args.prune_out, row)
        cfg = args.model if name == "dense" else os.path.join(d, "model.cfg")
        if not os.path.exists(os.path.join(d, "weights.safetensors")) or not os.path.exists(cfg):
            sys.exit(f"sparse_hw_table: {d} has no trained model. HINT: run scripts/prune_table.py --rows "
                     f"unpruned,l1-50,l1-80 --out {args.prune_out} first")
        models.append((name, cfg, os.path.join(d, "weights.safetensors"), "none", None))
    hw_seg = args.hw.split(",")[-1]  # the segments: the 64x64 tiles of the last preset
    ft = ["--epochs", str(args.epochs), "--lr", "0.01"] + SGD_RECIPE + ["--json", "--quiet"] + common
    dense = models[0]

    def finetune(name, cfg, weights, flags):
        d = os.path.join(args.out, name)
        if name not in res["models"]:
            cmd = [XBAR, "train", "--model", cfg, "--weights", weights, "--out", d] + ft + flags
            ck = os.path.join(d, "checkpoint.safetensors")
            if os.path.exists(ck):
                cmd = [c for c in cmd if c not in ("--weights", weights)] + ["--resume", ck]
            j = sh(cmd)
            res["models"][name] = {"command": rel(cmd), "test_acc": j["test_acc"], "xprune": j.get("xprune")}
            save()
        return os.path.join(d, "weights.safetensors")

    for kind in ("xcs", "xrs"):
        for pct in (50, 80):
            name = f"{kind}-{pct}"
            w = finetune(name, dense[1], dense[2], ["--xprune", kind, "--xprune-hw", hw_seg, "--xprune-target",
                                                    "%.2f" % (pct / 100), "--xprune-lasso", "1e-4"])
            models.append((name, dense[1], w, "columns" if kind == "xcs" else "rows", None))
    byname = {m[0]: m for m in models}
    for base in ("dense", "cf-80", "xcs-80"):
        b = byname[base]
        extra = ["--wct-percentile", "90"]
        if base == "xcs-80":  # keep its cut segments cut (they are the weakest: the same ones)
            extra += ["--xprune", "xcs", "--xprune-hw", hw_seg, "--xprune-target", "0.80"]
        w = finetune(base + "+wct", b[1], b[2], extra)
        models.append((base + "+wct", b[1], w, b[3], None))
        models.append((base + "+wct@s0", b[1], w, b[3], os.path.join(os.path.dirname(w), "wct.json")))

    # the hardware: each preset at each tile size
    hws = []
    for h in args.hw.split(","):
        text = open(h).read()
        for t in args.tiles.split(","):
            name = "%s@%s" % (re.sub(r"^reram-\d+-", "", os.path.basename(h)[:-4]), t)
            p = os.path.join(args.out, "hw-%s.cfg" % name.replace("@", "-"))
            body = re.sub(r"(?m)^rows\s*=.*$", "rows = " + t, text)
            body = re.sub(r"(?m)^cols\s*=.*$", "cols = " + t, body)
            open(p, "w").write(body)
            hws.append((name, p))
    for (mname, cfg, w, pack, wsc) in models:
        for (hname, hp) in hws:
            for rr in ("none", "round-robin"):
                key = f"{mname}|{hname}|{rr}"
                if key in res["evals"]:
                    continue
                cmd = [XBAR, "eval", "--model", cfg, "--weights", w, "--hw", hp, "--pack", pack, "--rearrange", rr,
                       "--limit", str(args.limit), "--json", "--quiet"] + common + (["--w-scales", wsc] if wsc else [])
                j = sh(cmd)
                L = [l for l in j["layers"] if l.get("mapped")]
                cells = sum(l["cells_used"] for l in L)
                res["evals"][key] = {
                    "command": rel(cmd), "sw": j["software"]["accuracy"], "hw": j["hardware"]["accuracy_mean"],
                    "crossbars": sum(l["arrays"] for l in L),
                    "low_share": sum(l["low_conductance_share"] * l["cells_used"] for l in L) / cells,
                    "rel_error": sum(l["rel_error"] for l in L) / len(L)}
                save()

    print("Test accuracy on crossbars (first %d test images), the drop from the model's own software accuracy, "
          "crossbars, cells below mid-conductance, mean relative error of the layers' outputs; rearrangement "
          "round-robin after the slash.\n" % args.limit)
    print("| model | software | " + " | ".join(h for h, _ in hws) + " |")
    print("|---|---|" + "---|" * len(hws))
    for (mname, cfg, w, pack, wsc) in models:
        cells = []
        sw = None
        for (hname, hp) in hws:
            a, b = res["evals"][f"{mname}|{hname}|none"], res["evals"][f"{mname}|{hname}|round-robin"]
            sw = a["sw"]
            cells.append("%.2f / %.2f (%+.2f / %+.2f), %d xbars, low %.1f%%, err %.3f / %.3f" % (
                100 * a["hw"], 100 * b["hw"], 100 * (a["hw"] - sw), 100 * (b["hw"] - sw), a["crossbars"],
                100 * a["low_share"], a["rel_error"], b["rel_error"]))
        print("| %s | %.2f | %s |" % (mname, 100 * sw, " | ".join(cells)))
    print("\nfine-tunes: " + "; ".join("%s: `%s`" % (k, v["command"]) for k, v in res["models"].items()))
    print("\nevaluations: `%s` (one per model, preset, tile size and rearrangement)" %
          res["evals"][next(iter(res["evals"]))]["command"])
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axs = plt.subplots(1, len(hws), figsize=(4 * len(hws), 3.6), sharey=True)
        for ax, (hname, hp) in zip(axs, hws):
            for (mname, cfg, w, pack, wsc) in models:
                a = res["evals"][f"{mname}|{hname}|none"]
                b = res["evals"][f"{mname}|{hname}|round-robin"]
                ax.scatter([a["crossbars"]], [100 * (a["hw"] - a["sw"])], marker="o")
                ax.scatter([b["crossbars"]], [100 * (b["hw"] - b["sw"])], marker="^")
                ax.annotate(mname, (a["crossbars"], 100 * (a["hw"] - a["sw"])), fontsize=7)
            ax.set_title(hname)
            ax.set_xlabel("crossbars")
        axs[0].set_ylabel("accuracy change on crossbars (points)")
        fig.suptitle("structured-sparse CNN-S on parasitic crossbars (o: as mapped, ^: rearranged)")
        fig.tight_layout()
        fig.savefig(args.plot)


if __name__ == "__main__":
    main()
