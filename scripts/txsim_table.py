#!/usr/bin/env python3
"""TxSim's quick experiment (methods.md item 6g) on xbar's on-chip training: CNN-T trained from scratch
on CIFAR-10 for a few epochs, every row with the same recipe:

  float; the ideal fixed-point crossbar (8-bit weights in 2-bit cells, no circuit, linear updates);
  the non-ideal crossbar (64x64, 100k/1M ReRAM, 1 kOhm driver and sense, 5 ohm wires) with the circuit
  solved every step, with I-FCM (solved every 100 steps, distortion ratios in between), and with the
  approximate decoupled solver every step; then update non-linearity v in {0, 0.1, 0.5} x write noise
  gamma in {0, 5, 10} (I-FCM).

Each row trains in OUT/<row>/ (resumable: a finished row is skipped, an interrupted one continues from
its checkpoint and conductance state), appends its result to OUT/results.jsonl, and the table (markdown)
and a figure are written at the end.

    /usr/bin/python3 scripts/txsim_table.py [--out runs/txsim] [--epochs 3] [--threads 1] [--rows a,b]
        [--train-limit N] [--markdown] [--plot FIG.svg]
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
XBAR = os.environ.get("XBAR_BIN", os.path.join(ROOT, "build", "xbar"))
MODEL = os.path.join(ROOT, "configs", "exp", "cnn-t.cfg")

BASE = """[meta]
name = txsim-exp-{name}
source = methods.md item 6g (TxSim quick experiment): 64x64, R_on/R_off 100k/1M, 2-bit devices; single pass (ideal converters)
[tile]
rows = 64
cols = 64
[mapping]
scheme = differential
weight_bits = 8
bits_per_cell = 2
r_on_ohm = 100e3
r_off_ohm = 1e6
[circuit]
{circuit}solver = {solver}
[update]
model = {model}
{txsim}refresh_steps = {L}
refresh_solver = {refresh}
"""


def hw_text(name, solver="exact", model="txsim", v=0.1, g=5.0, L=0, refresh="exact"):
    txsim = "nonlinearity = %g\nwrite_noise = %g\nwrite_noise_sigma = 0.01\n" % (v, g) if model == "txsim" else ""
    circuit = "" if solver == "none" else "r_wire_ohm = 5\nr_driver_ohm = 1000\nr_sense_ohm = 1000\n"
    return BASE.format(name=name, circuit=circuit, solver=solver, model=model, txsim=txsim, L=L, refresh=refresh)


def rows():
    r = [("float", "float (no crossbar)", None),
         ("ideal-fixed", "ideal fixed-point crossbar (no circuit, linear update)",
          hw_text("ideal-fixed", solver="none", model="linear")),
         ("fcm-every-step", "non-ideal, circuit solved every step (v 0.1, gamma 5)", hw_text("fcm", L=0)),
         ("ifcm-100", "non-ideal, I-FCM: solved every 100 steps (v 0.1, gamma 5)",
          hw_text("ifcm", L=100, refresh="distortion")),
         ("aam-every-step", "non-ideal, decoupled approximation every step (v 0.1, gamma 5)",
          hw_text("aam", solver="decoupled", L=0))]
    for v in (0, 0.1, 0.5):
        for g in (0, 5, 10):
            name = "v%g-g%g" % (v, g)
            r.append((name, "I-FCM 100, v %g, gamma %g" % (v, g),
                      hw_text(name, v=v, g=g, L=100, refresh="distortion")))
    return r


def done_rows(out):
    path = os.path.join(out, "results.jsonl")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return {j["row"]: j for j in map(json.loads, f) if j.get("row")}


def train(args, name, desc, hw):
    d = os.path.join(args.out, name)
    os.makedirs(d, exist_ok=True)
    cmd = [XBAR, "train", "--model", MODEL, "--epochs", str(args.epochs), "--batch", "128", "--lr", "0.05",
           "--momentum", "0", "--schedule", "cosine", "--weight-decay", "5e-4", "--threads", str(args.threads),
           "--out", d, "--json", "--quiet"]
    if args.train_limit:
        cmd += ["--train-limit", str(args.train_limit)]
    if args.data:
        cmd += ["--data", args.data]
    if hw:
        with open(os.path.join(d, "hw.cfg"), "w") as f:
            f.write(hw)
        cmd += ["--hw", os.path.join(d, "hw.cfg"), "--hw-mode", "onchip"]
    if os.path.exists(os.path.join(d, "checkpoint.safetensors")):
        cmd += ["--resume", os.path.join(d, "checkpoint.safetensors")]
    print("txsim_table: %s: %s" % (name, " ".join(cmd)), flush=True)
    with open(os.path.join(d, "log.jsonl"), "a") as log:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
        log.write(p.stdout)
    if p.returncode != 0:
        sys.exit("txsim_table: row %s failed (exit %d)" % (name, p.returncode))
    lines = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
    res = lines[-1]
    epochs = [l for l in lines[:-1] if "epoch" in l]
    res["row"], res["desc"] = name, desc
    res["seconds_per_epoch"] = res["run_seconds"] / max(1, res["run_epochs"])
    res["per_epoch_test_acc"] = [l.get("test_acc") for l in epochs]
    res["command"] = " ".join(os.path.relpath(c, ROOT) if c.startswith(ROOT) else c for c in cmd)
    with open(os.path.join(args.out, "results.jsonl"), "a") as f:
        f.write(json.dumps(res) + "\n")
    return res


def table(results, order):
    out = ["| row | test acc | seconds per epoch | of which refresh / update (s) |", "|---|---|---|---|"]
    for name, desc, _ in order:
        r = results.get(name)
        if not r:
            continue
        hs = r.get("hw_seconds", {})
        part = "%.1f / %.1f" % (hs.get("refresh", 0) + hs.get("program", 0), hs.get("update", 0)) if hs else "-"
        out.append("| %s | %.2f%% | %.0f | %s |" % (desc, 100 * r["test_acc"], r["seconds_per_epoch"], part))
    return "\n".join(out)


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    names = [n for n in ("float", "ideal-fixed", "fcm-every-step", "ifcm-100", "aam-every-step") if n in results]
    ax[0].bar(range(len(names)), [100 * results[n]["test_acc"] for n in names], color="#4a7ab5")
    ax[0].set_xticks(range(len(names)))
    ax[0].set_xticklabels(names, rotation=20, fontsize=8)
    ax[0].set_ylabel("test accuracy (%)")
    ax[0].set_title("CNN-T, on-chip training, solvers")
    for v in (0, 0.1, 0.5):
        gs = [g for g in (0, 5, 10) if "v%g-g%g" % (v, g) in results]
        ax[1].plot(gs, [100 * results["v%g-g%g" % (v, g)]["test_acc"] for g in gs], "o-", label="v = %g" % v)
    ax[1].set_xlabel("write noise gamma")
    ax[1].set_ylabel("test accuracy (%)")
    ax[1].set_title("update non-linearity and write noise (I-FCM 100)")
    ax[1].legend()
    fig.tight_layout()
    fig.savefig(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "txsim"))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--train-limit", type=int, default=0)
    ap.add_argument("--data")
    ap.add_argument("--rows", help="comma-separated row names (default: all)")
    ap.add_argument("--markdown", action="store_true", help="only print the table of the finished rows")
    ap.add_argument("--plot", help="write the figure here")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    order = rows()
    want = set(args.rows.split(",")) if args.rows else {r[0] for r in order}
    results = done_rows(args.out)
    if not args.markdown:
        for name, desc, hw in order:
            if name in want and name not in results:
                results[name] = train(args, name, desc, hw)
    print(table(results, order))
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
