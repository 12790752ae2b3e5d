#!/usr/bin/python3
"""NEAT's table (methods.md item 2) on ResNet-20: accuracy on 1T-1R crossbars over the gate voltage for no
mitigation, one-shot clipping, iterative clip-and-retrain (NEAT) and heterogeneous per-layer gate voltages, with
the energy per image relative to V_g = 1.0 V.

For each gate voltage V_g the preset (configs/hw/neat-1t1r-64.cfg) is copied with [cell] v_gate_v = V_g, and:
  * none: `xbar eval --hw` of the trained weights W;
  * clip: `xbar neat --clip-out` (every layer clipped once to its weight cut-off), evaluated with the pre-clip
    mapping scales (`--w-scales`);
  * neat: `xbar train --weights W --neat-hw HW --neat-every K` (clip, then K steps of Adam, repeated), evaluated
    the same way;
  * energy: `xbar energy --hw` (nominal counts) of W, over the energy at V_g = 1.0 V.
The heterogeneous row: `xbar neat --write-hw` picks per layer the lowest gate voltage of the grid whose cut-off
covers the --percentile of its |w|; that config is evaluated without retraining and after NEAT training on it.
Each row also gives the share of weights in the linear range (|w| <= W_cut, mapped as evaluated), averaged over
the mapped layers.

    /usr/bin/python3 scripts/neat_table.py --weights weights/resnet20-cutout200.safetensors
        [--v-gates 0.7,0.75,0.8,0.9,1.0] [--epochs 1] [--neat-every 13] [--lr 1e-5] [--percentile 99]
        [--out runs/neat] [--threads 1] [--limit N] [--train-limit N] [--data DIR]

Resumable: finished runs are skipped (results.json in --out); prints the markdown table with the commands.
"""
import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runlib import ROOT, XBAR, common_flags, rel, results, sh as sh_  # noqa: E402

PRESET = os.path.join(ROOT, "configs", "hw", "neat-1t1r-64.cfg")


def sh(cmd):
    return sh_(cmd, "neat_table")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", required=True)
    ap.add_argument("--v-gates", default="0.7,0.75,0.8,0.9,1.0")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--neat-every", type=int, default=13)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--percentile", type=float, default=99)
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "neat"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--train-limit", type=int, default=0)
    ap.add_argument("--data")
    args = ap.parse_args()
    res, save = results(args.out)
    common = common_flags(args)
    lim = ["--limit", str(args.limit)] if args.limit else []
    text = open(PRESET).read()

    def cfg(vg):
        p = os.path.join(args.out, "hw-vg%s.cfg" % vg)
        with open(p, "w") as f:
            f.write(re.sub(r"(?m)^v_gate_v = .*$", "v_gate_v = %s" % vg, text))
        return p

    def evaluate(w, hw, scales=None):
        cmd = [XBAR, "eval", "--model", "resnet20", "--weights", w, "--hw", hw, "--seeds", "1", "--energy", "0",
               "--json", "--quiet"] + common + lim + (["--w-scales", scales] if scales else [])
        j = sh(cmd)
        return {"sw": j["software"]["accuracy"], "hw": j["hardware"]["accuracy_mean"], "command": rel(cmd)}

    def share(w, hw, scales=None):
        cmd = [XBAR, "neat", "--model", "resnet20", "--weights", w, "--hw", hw, "--json"] + (
            ["--w-scales", scales] if scales else [])
        ls = [l for l in sh(cmd)["layers"] if not l["digital"]]
        return sum(l["linear_share"] for l in ls) / len(ls)

    def energy(hw):
        cmd = [XBAR, "energy", "--model", "resnet20", "--weights", args.weights, "--hw", hw, "--json", "--quiet",
               "--threads", str(args.threads)]
        j = sh(cmd)
        return {"total": j["total_energy_j"], "arrays": j["breakdown"]["array_energy_j"]}

    def neat_train(name, hw):
        d = os.path.join(args.out, name)
        cmd = [XBAR, "train", "--model", "resnet20", "--weights", args.weights, "--neat-hw", hw, "--neat-every",
               str(args.neat_every), "--optimizer", "adam", "--lr", str(args.lr), "--weight-decay", "0", "--schedule",
               "const", "--epochs", str(args.epochs), "--batch", "128", "--eval-limit", "1000", "--out", d,
               "--json", "--quiet"] + common + (["--train-limit", str(args.train_limit)] if args.train_limit else [])
        if os.path.exists(os.path.join(d, "checkpoint.safetensors")):
            cmd = [c for c in cmd if c not in (args.weights, "--weights")] + [
                "--resume", os.path.join(d, "checkpoint.safetensors")]
        j = sh(cmd)
        return {"weights": os.path.join(d, "weights.safetensors"), "scales": os.path.join(d, "wct.json"),
                "command": rel(cmd), "seconds": j["run_seconds"]}

    vgs = args.v_gates.split(",")
    for vg in vgs:
        r = res.setdefault(vg, {})
        hw = cfg(vg)
        if "energy" not in r:
            r["energy"] = energy(hw)
        if "none" not in r:
            r["none"] = evaluate(args.weights, hw)
            r["none"]["share"] = share(args.weights, hw)
        if "clip" not in r:
            d = os.path.join(args.out, "clip-vg%s" % vg)
            cmd = [XBAR, "neat", "--model", "resnet20", "--weights", args.weights, "--hw", hw, "--clip-out", d, "--json"]
            sh(cmd)
            w, s = os.path.join(d, "weights.safetensors"), os.path.join(d, "wct.json")
            r["clip"] = evaluate(w, hw, s)
            r["clip"]["share"] = share(w, hw, s)
            r["clip"]["clip_command"] = rel(cmd)
        save()
        if "neat" not in r:
            t = neat_train("neat-vg%s" % vg, hw)
            r["neat"] = evaluate(t["weights"], hw, t["scales"])
            r["neat"]["share"] = share(t["weights"], hw, t["scales"])
            r["neat"]["train"] = t
        save()
    h = res.setdefault("hetero", {})
    hw = os.path.join(args.out, "hw-hetero.cfg")
    if "config" not in h:
        cmd = [XBAR, "neat", "--model", "resnet20", "--weights", args.weights, "--hw", cfg("1.0"), "--percentile",
               str(args.percentile), "--v-gates", args.v_gates, "--write-hw", hw, "--json"]
        j = sh(cmd)
        h["config"] = {"command": rel(cmd), "v_gates": {l["layer"]: l["v_gate_hetero"] for l in j["layers"]}}
        h["energy"] = energy(hw)
        h["none"] = evaluate(args.weights, hw)
        h["none"]["share"] = share(args.weights, hw)
        save()
    if "neat" not in h:
        t = neat_train("neat-hetero", hw)
        h["neat"] = evaluate(t["weights"], hw, t["scales"])
        h["neat"]["share"] = share(t["weights"], hw, t["scales"])
        h["neat"]["train"] = t
        save()

    e0 = res["1.0"]["energy"] if "1.0" in res else None
    pct = lambda x: "%.2f%%" % (100 * x)
    less = lambda e, k: "%.1f%%" % (100 * (1 - e[k] / e0[k])) if e0 else "-"
    print("| V_g (V) | no mitigation | one-shot clip | NEAT (clip + retrain) | weights in the linear range (none / clip "
          "/ NEAT) | energy per image (arrays) | saved vs 1.0 V: total / arrays |")
    print("|---|---|---|---|---|---|---|")
    for vg in vgs:
        r = res[vg]
        print("| %s | %s | %s | %s | %s / %s / %s | %.3g µJ (%.3g µJ) | %s / %s |" % (
            vg, pct(r["none"]["hw"]), pct(r["clip"]["hw"]), pct(r["neat"]["hw"]), pct(r["none"]["share"]),
            pct(r["clip"]["share"]), pct(r["neat"]["share"]), 1e6 * r["energy"]["total"], 1e6 * r["energy"]["arrays"],
            less(r["energy"], "total"), less(r["energy"], "arrays")))
    print("| heterogeneous (p%g) | %s | - | %s | %s / - / %s | %.3g µJ (%.3g µJ) | %s / %s |" % (
        args.percentile, pct(h["none"]["hw"]), pct(h["neat"]["hw"]), pct(h["none"]["share"]), pct(h["neat"]["share"]),
        1e6 * h["energy"]["total"], 1e6 * h["energy"]["arrays"], less(h["energy"], "total"), less(h["energy"], "arrays")))
    print("\nsoftware accuracy of W: %s; heterogeneous gate voltages: %s" % (
        pct(res[vgs[0]]["none"]["sw"]), ", ".join("%s %g" % kv for kv in h["config"]["v_gates"].items())))
    print("\ncommands (V_g = %s): `%s`; `%s`; `%s`; `%s`" % (
        vgs[0], res[vgs[0]]["none"]["command"], res[vgs[0]]["clip"]["clip_command"], res[vgs[0]]["neat"]["train"]["command"],
        res[vgs[0]]["neat"]["command"]))
    print("NEAT training: %.0f s per run (V_g = %s)" % (res[vgs[0]]["neat"]["train"]["seconds"], vgs[0]))


if __name__ == "__main__":
    main()
