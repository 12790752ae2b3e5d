#!/usr/bin/env python3
"""The 2023 batchnorm paper's table (methods.md 5B) on xbar: a trained ResNet-20 on crossbars with
parasitics only (their setting: 1 kOhm driver and sense, 5 / 10 ohm wires, ON/OFF 10, 8-bit weights
from 4-bit cells, only the convolutions on crossbars) at 64x64 and 128x128, then batchnorm adaptation
(`xbar eval --adapt-bn`), then gamma-beta fine-tuning through the hardware (`xbar train --trainable bn`),
and the same with Gaussian read noise 0.1 and 0.3 added (64x64), where adaptation stops helping.

Every row runs once into OUT/<row>/ (resumable: finished rows are skipped), its JSON kept; the table
(markdown, with the command behind every number) and a figure come at the end.

    /usr/bin/python3 scripts/bn_table.py --weights W.safetensors [--out runs/bn2023] [--threads 1]
        [--adapt 10000] [--ft-epochs 2] [--seeds 3] [--limit 0] [--train-limit 0] [--rows a,b] [--markdown]
        [--plot F.svg]
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
XBAR = os.environ.get("XBAR_BIN", os.path.join(ROOT, "build", "xbar"))

HW = """[meta]
name = bn2023-{size}-parasitic{tag}
source = 2023 batchnorm paper (methods.md 5B, S7): {size}x{size}, ON/OFF 10, R_driver = R_sense = 1 kOhm, {wire} ohm wires, 8-bit weights from 4-bit cells, convolutions only; R_on 100 kOhm [R]; ideal converters
[tile]
rows = {size}
cols = {size}
map_last = 0
[mapping]
scheme = differential
weight_bits = 8
bits_per_cell = 4
r_on_ohm = 100e3
r_off_ohm = 1e6
[circuit]
r_wire_ohm = {wire}
r_driver_ohm = 1000
r_sense_ohm = 1000
solver = exact
{noise}"""

# (name, size, wire ohm, read noise sigma)
SETTINGS = [("64", 64, 5, 0), ("128", 128, 10, 0), ("64-rn0.1", 64, 5, 0.1), ("64-rn0.3", 64, 5, 0.3)]
PAPER = {"64": "74.37 / 86.31 / 87.97", "128": "32.9 / 83.03 / 87.81"}


def hw_cfg(out, name, size, wire, noise):
    path = os.path.join(out, "hw-%s.cfg" % name)
    extra = "[device]\nread_noise_sigma = %g\nread_noise_mode = relative\n" % noise if noise else ""
    with open(path, "w") as f:
        f.write(HW.format(size=size, wire=wire, tag="-rn%g" % noise if noise else "", noise=extra))
    return path


def sh(cmd, log):
    print("bn_table: " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
    with open(log, "a") as f:
        f.write(p.stdout)
    if p.returncode != 0:
        sys.exit("bn_table: failed (exit %d): %s" % (p.returncode, " ".join(cmd)))
    return json.loads([l for l in p.stdout.splitlines() if l.startswith("{")][-1])


def rel(cmd):
    return " ".join(os.path.relpath(c, ROOT) if c.startswith(ROOT) else c for c in cmd)


def evaluate(args, weights, cfg, adapt, log):
    cmd = [XBAR, "eval", "--model", "resnet20", "--weights", weights, "--hw", cfg, "--seeds", str(args.seeds),
           "--seed", "1", "--threads", str(args.threads), "--json", "--quiet"]
    if adapt:
        cmd += ["--adapt-bn", str(adapt)]
    if args.limit:
        cmd += ["--limit", str(args.limit)]
    if args.data:
        cmd += ["--data", args.data]
    j = sh(cmd, log)
    return {"acc_mean": j["hardware"]["accuracy_mean"], "acc_std": j["hardware"]["accuracy_std"],
            "sw": j.get("software", {}).get("accuracy"), "command": rel(cmd)}


def finetune(args, weights, cfg, noise, d, log):
    cmd = [XBAR, "train", "--model", "resnet20", "--weights", weights, "--hw", cfg, "--hw-mode", "aware",
           "--hw-resample", "step" if noise else "never", "--trainable", "bn", "--epochs", str(args.ft_epochs),
           "--lr", "0.01", "--schedule", "cosine", "--momentum", "0.9", "--weight-decay", "0", "--batch", "128",
           "--threads", str(args.threads), "--eval-limit", "1000", "--out", d, "--json", "--quiet"]
    if args.data:
        cmd += ["--data", args.data]
    if args.train_limit:
        cmd += ["--train-limit", str(args.train_limit)]
    if os.path.exists(os.path.join(d, "checkpoint.safetensors")):
        cmd += ["--resume", os.path.join(d, "checkpoint.safetensors")]
    sh(cmd, log)
    return os.path.join(d, "weights.safetensors"), rel(cmd)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", required=True)
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "bn2023"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--adapt", type=int, default=10000, help="training images for batchnorm adaptation")
    ap.add_argument("--ft-epochs", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--limit", type=int, default=0, help="test images (0: all)")
    ap.add_argument("--train-limit", type=int, default=0, help="fine-tuning images per epoch (0: all; for a smoke test)")
    ap.add_argument("--data")
    ap.add_argument("--rows", help="settings to run, e.g. 64,128 (default: all)")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--plot")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    resf = os.path.join(args.out, "results.json")
    res = json.load(open(resf)) if os.path.exists(resf) else {}
    want = args.rows.split(",") if args.rows else [s[0] for s in SETTINGS]
    for name, size, wire, noise in SETTINGS:
        if args.markdown or name not in want:
            continue
        r = res.setdefault(name, {})
        cfg = hw_cfg(args.out, name, size, wire, noise)
        d = os.path.join(args.out, name)
        os.makedirs(d, exist_ok=True)
        log = os.path.join(d, "log.jsonl")
        if "hw" not in r:
            r["hw"] = evaluate(args, args.weights, cfg, 0, log)
        if "adapt" not in r:
            r["adapt"] = evaluate(args, args.weights, cfg, args.adapt, log)
        if "finetune" not in r:
            w, cmd = finetune(args, args.weights, cfg, noise, os.path.join(d, "ft"), log)
            r["finetune"] = evaluate(args, w, cfg, 0, log)
            r["finetune"]["train_command"] = cmd
        if "finetune_adapt" not in r:  # the fine-tuned gamma, beta with statistics recomputed through the hardware
            r["finetune_adapt"] = evaluate(args, os.path.join(d, "ft", "weights.safetensors"), cfg, args.adapt, log)
        json.dump(res, open(resf, "w"), indent=1)
    rows = ["| setting | float | on crossbars | + BN adaptation | + gamma-beta fine-tuning | fine-tuned + adaptation "
            "| paper (VGG16): crossbar / adaptation / fine-tuning |", "|---|---|---|---|---|---|---|"]
    for name, *_ in SETTINGS:
        r = res.get(name)
        if not r or "finetune_adapt" not in r:
            continue
        f = lambda k: "%.2f ± %.2f" % (100 * r[k]["acc_mean"], 100 * r[k]["acc_std"])
        sw = r["hw"]["sw"]
        rows.append("| %s | %s | %s | %s | %s | %s | %s |" % (name, "%.2f" % (100 * sw) if sw is not None else "-",
                                                              f("hw"), f("adapt"), f("finetune"), f("finetune_adapt"),
                                                              PAPER.get(name, "-")))
    print("\nCommands:")
    for name, *_ in SETTINGS:
        for k in ("hw", "adapt", "finetune", "finetune_adapt"):
            if name in res and k in res[name]:
                c = res[name][k]
                print("* %s %s: `%s`%s" % (name, k, c["command"],
                                           " after `%s`" % c["train_command"] if "train_command" in c else ""))
    print("\n".join(rows))
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        names = [n for n, *_ in SETTINGS if n in res and "finetune_adapt" in res[n]]
        fig, ax = plt.subplots(figsize=(9, 3.6))
        for i, k in enumerate(("hw", "adapt", "finetune")):
            ax.bar([j + 0.27 * (i - 1) for j in range(len(names))], [100 * res[n][k]["acc_mean"] for n in names],
                   0.27, yerr=[100 * res[n][k]["acc_std"] for n in names],
                   label={"hw": "on crossbars", "adapt": "+ BN adaptation", "finetune": "+ gamma-beta fine-tuning"}[k])
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title("ResNet-20 on parasitic crossbars: batchnorm recovery")
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
        fig.tight_layout()
        fig.savefig(args.plot)


if __name__ == "__main__":
    main()
