#!/usr/bin/env python3
"""Training through the crossbars, and quantization-aware training, against the float training step of the
same build, side by side.

Runs `xbar train --steps N` for the float network and for each hardware mode or quantizer, interleaved and repeated
(the machine is noisy: never trust one time), and prints the median steady img/s of each and its ratio
to the float step's median, with the seconds the crossbar parts took (programming, update, refresh).

    /usr/bin/python3 bench/bench_hwtrain.py [--model resnet20] [--batch 128] [--steps 12] [--repeat 3]
        [--threads 1] [--data DIR] [--json OUT.json] [--cases mild-variation,onchip]

Needs CIFAR-10 (--data, $XBAR_DATA or ../shared/data/cifar10) and build/xbar.  docs/training-hw.md
and docs/quantization.md record its results with the command (--cases qat: the quantizers only).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
XBAR = os.environ.get("XBAR_BIN", os.path.join(ROOT, "build", "xbar"))

# (label, extra flags, [update] section appended to the preset or None)
ONCHIP_L100 = "[update]\nmodel = txsim\nnonlinearity = 0.1\nwrite_noise = 5\nwrite_noise_sigma = 0.01\n" \
              "refresh_steps = 100\nrefresh_solver = distortion\n"
CASES = [
    ("float", [], None, None),
    ("aware ideal", ["--hw-mode", "aware"], "configs/hw/ideal.cfg", None),
    ("aware reram-64-variation", ["--hw-mode", "aware"], "configs/hw/reram-64-variation.cfg", None),
    ("aware reram-64-mild-variation", ["--hw-mode", "aware"], "configs/hw/reram-64-mild-variation.cfg", None),
    ("aware reram-64-mild-variation, sample per epoch", ["--hw-mode", "aware", "--hw-resample", "epoch"],
     "configs/hw/reram-64-mild-variation.cfg", None),
    ("aware reram-64-mild-variation, I-FCM refresh 10", ["--hw-mode", "aware"],
     "configs/hw/reram-64-mild-variation.cfg", "[update]\nrefresh_steps = 10\nrefresh_solver = distortion\n"),
    ("onchip reram-64-mild-variation, txsim, refresh 100", ["--hw-mode", "onchip", "--momentum", "0"],
     "configs/hw/reram-64-mild-variation.cfg", ONCHIP_L100),
    ("qat uniform w8a8", ["--weight-bits", "8", "--act-bits", "8"], None, None),
    ("qat uniform w4a4", ["--weight-bits", "4", "--act-bits", "4"], None, None),
    ("qat dorefa w2a2", ["--quant", "dorefa", "--weight-bits", "2", "--act-bits", "2"], None, None),
    ("qat binary, pact a4", ["--quant", "binary", "--act", "pact", "--act-bits", "4"], None, None),
    ("qat ternary-asym, a4", ["--quant", "ternary-asym", "--act-bits", "4"], None, None),
    ("qat ad-precision from 16 bits", ["--ad-precision"], None, None),
]


def run(args, flags, tmp):
    cmd = [XBAR, "train", "--model", args.model, "--steps", str(args.steps), "--batch", str(args.batch),
           "--threads", str(args.threads), "--train-limit", str(args.steps * args.batch), "--eval-limit", "128",
           "--out", os.path.join(tmp, "run"), "--json", "--quiet"] + flags
    if args.data:
        cmd += ["--data", args.data]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit("bench_hwtrain: %s failed:\n%s" % (" ".join(cmd), out.stderr[-2000:]))
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data")
    ap.add_argument("--json")
    ap.add_argument("--cases", help="comma-separated substrings of the run labels to time (float always runs)")
    args = ap.parse_args()
    if args.cases:
        keep = args.cases.split(",")
        CASES[:] = [c for c in CASES if c[0] == "float" or any(k in c[0] for k in keep)]
    res = {c[0]: [] for c in CASES}
    parts = {c[0]: [] for c in CASES}
    with tempfile.TemporaryDirectory() as tmp:
        flags_of = {}
        for label, flags, preset, update in CASES:
            f = list(flags)
            if preset:
                path = os.path.join(ROOT, preset)
                if update:
                    path = os.path.join(tmp, label.replace(" ", "_").replace(",", "") + ".cfg")
                    with open(os.path.join(ROOT, preset)) as src, open(path, "w") as dst:
                        dst.write(src.read() + "\n" + update)
                f += ["--hw", path]
            flags_of[label] = f
        for r in range(args.repeat):
            for label, *_ in CASES:
                j = run(args, flags_of[label], tmp)
                res[label].append(j["steady_images_per_s"])
                parts[label].append(j.get("hw_seconds", {}))
                print("  repeat %d %-52s %7.1f img/s" % (r + 1, label, j["steady_images_per_s"]), flush=True)
    base = statistics.median(res["float"])
    print("\n%s, batch %d, %d steps, %d thread(s), median of %d:" % (args.model, args.batch, args.steps, args.threads,
                                                                     args.repeat))
    print("| run | img/s | time against the float step | crossbar seconds per run (program / update / refresh) |")
    print("|---|---|---|---|")
    rows = []
    for label, *_ in CASES:
        med = statistics.median(res[label])
        hs = parts[label][len(parts[label]) // 2]
        sec = "%.2f / %.2f / %.2f" % (hs.get("program", 0), hs.get("update", 0), hs.get("refresh", 0)) if hs else "-"
        print("| %s | %.1f | %.2fx | %s |" % (label, med, base / med, sec))
        rows.append({"run": label, "images_per_s": med, "ratio": base / med, "all": res[label], "hw_seconds": hs})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
