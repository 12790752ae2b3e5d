#!/usr/bin/env python3
"""ref_prune.py -- pruning while training from the command line (run by tests/run_all.sh with /usr/bin/python3).

Every score (l1, mean-act, random: per layer; frs, taylor: global) prunes CNN-T during a short `xbar train`
run: the run reports the cut, the MACs and the training MACs saved; OUT/model.cfg is the smaller model, and
`xbar eval` of it with OUT/weights.safetensors gives the run's own last test accuracy; `xbar info` reports
the MACs the run reported.  A run stopped after a pruning step and resumed equals the uninterrupted one bit
for bit (weights, model.cfg, prune-state.json).  Weight-constrained training holds every layer inside its
bound and resumes bit for bit.  Crossbar-aware pruning cuts tile segments, holds them at zero, resumes bit for
bit, and `xbar eval --pack` programs the crossbars it reported.  Errors a user can make exit non-zero with a hint.

Binary: $XBAR_BIN (default build/xbar).  Data: $XBAR_DATA or ../shared/data/cifar10.
Prints one line per check and ends with "ref_prune: N passed, M failed".
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from refutil import DATA, ROOT, XBAR, check, summary  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "tools"))
from st_np import load as st_load  # noqa: E402


def xbar(*args):
    """one thread: the suite may share the machine, and this is about results, not speed"""
    args = list(args) + (["--threads", "1"] if args and args[0] in ("train", "eval") else [])
    r = subprocess.run([XBAR] + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
    return r.returncode, r.stdout, r.stderr


def same_files(a, b, names):
    return all(open(os.path.join(a, f), "rb").read() == open(os.path.join(b, f), "rb").read() for f in names)


def main():
    if not os.path.isfile(os.path.join(DATA, "test_batch.bin")):
        check("CIFAR-10 present", False, f"{DATA}: no test_batch.bin")
        return summary("ref_prune")
    d = tempfile.mkdtemp(prefix="ref_prune-")
    cnnt = os.path.join(ROOT, "configs", "exp", "cnn-t.cfg")
    common = ["--model", cnnt, "--epochs", "3", "--lr", "0.02", "--train-limit", "2560", "--eval-limit", "500",
              "--prune-start", "1", "--prune-steps", "2", "--prune-samples", "256", "--json", "--quiet",
              "--data", DATA]
    try:
        for score in ("l1", "mean-act", "random", "frs", "taylor"):
            out = os.path.join(d, score)
            rc, so, se = xbar("train", *common, "--prune", score, "--prune-target", "0.5", "--out", out)
            if not check(f"--prune {score}: train", rc == 0, se.strip()[-300:]):
                continue
            res = json.loads(so.strip().splitlines()[-1])
            p = res["pruning"]
            ok = p["steps"] == 2 and abs(p["pruned_fraction"] - 0.5) < 0.03 and p["macs"] < p["macs_start"] and \
                0 < p["train_macs_saved"] < 1 and p["params"] < p["params_start"] and \
                p["scope"] == ("global" if score in ("frs", "taylor") else "layer")
            check(f"--prune {score}: two steps to half the filters, fewer MACs and training MACs", ok,
                  json.dumps(p)[:300] if not ok else
                  f"{p['channels_start']} -> {p['channels']} filters, MACs -{100 * p['flops_reduction']:.0f}%, "
                  f"training MACs -{100 * p['train_macs_saved']:.0f}%")
            cfg, w = os.path.join(out, "model.cfg"), os.path.join(out, "weights.safetensors")
            rc, so2, se2 = xbar("eval", "--model", cfg, "--weights", w, "--limit", "500", "--json", "--quiet",
                                "--data", DATA)
            check(f"--prune {score}: xbar eval of OUT/model.cfg = the run's test accuracy",
                  rc == 0 and abs(json.loads(so2)["accuracy"] - res["test_acc"]) < 1e-9, (so2 + se2).strip()[:200])
            rc, so3, se3 = xbar("info", "--model", cfg, "--json")
            check(f"--prune {score}: xbar info of OUT/model.cfg shows the smaller model",
                  rc == 0 and json.loads(so3)["macs"] == p["macs"] and json.loads(so3)["params"] == p["params"],
                  (so3 + se3).strip()[:200])
        # stopped after the first cut (inside epoch 2) and resumed = uninterrupted
        a, b = os.path.join(d, "l1"), os.path.join(d, "l1-b")
        flags = ["--prune", "l1", "--prune-target", "0.5"]
        rc1, _, se1 = xbar("train", *common, *flags, "--steps", "25", "--out", b)
        rc2, _, se2 = xbar("train", *common, *flags, "--resume", os.path.join(b, "checkpoint.safetensors"), "--out", b)
        ok = rc1 == 0 and rc2 == 0 and same_files(a, b, ("weights.safetensors", "model.cfg", "prune-state.json"))
        check("--prune stopped after a cut and resumed gives the same weights, model.cfg and prune-state.json", ok,
              (se1 + se2).strip()[-300:])
        # a MAC budget alone
        rc, so, se = xbar("train", *common, "--prune", "frs", "--prune-target", "0.9", "--prune-flops", "0.6",
                          "--out", os.path.join(d, "budget"))
        ok = rc == 0
        if ok:
            p = json.loads(so.strip().splitlines()[-1])["pruning"]
            ok = p["macs"] <= 0.75 * p["macs_start"] and p["pruned_fraction"] < 0.9
        check("--prune-flops 0.6 stops the cut near 60% of the MACs", ok, (so + se).strip()[-300:])
        # weight-constrained training: every layer inside its bound; stopped and resumed = uninterrupted
        wflags = ["--model", cnnt, "--epochs", "2", "--lr", "0.02", "--train-limit", "2560", "--eval-limit", "500",
                  "--wct-percentile", "90", "--json", "--quiet", "--data", DATA]
        a, b = os.path.join(d, "wct-a"), os.path.join(d, "wct-b")
        rc, so, se = xbar("train", *wflags, "--out", a)
        ok = rc == 0 and os.path.isfile(os.path.join(a, "wct.json"))
        if ok:
            bounds = {l["layer"]: l["bound"] for l in json.load(open(os.path.join(a, "wct.json")))["layers"]}
            w = st_load(os.path.join(a, "weights.safetensors"))
            worst = max(float(np.abs(w[k + ".weight"]).max()) / v for k, v in bounds.items())
            ok = worst <= 1 + 1e-6
        check("--wct-percentile 90 holds every mapped layer inside its bound", ok,
              (so + se).strip()[-300:] if not ok else f"largest |w| / bound {worst:.6f}")
        rc1, _, se1 = xbar("train", *wflags, "--steps", "25", "--out", b)
        rc2, _, se2 = xbar("train", *wflags, "--resume", os.path.join(b, "checkpoint.safetensors"), "--out", b)
        ok = rc1 == 0 and rc2 == 0 and same_files(a, b, ("weights.safetensors", "wct.json"))
        check("--wct-percentile stopped and resumed gives the same weights and bounds", ok, (se1 + se2).strip()[-300:])
        # crossbar-aware pruning: segments of the tiles cut and held; the packed evaluation programs the crossbars
        # the run reported; stopped after the cut and resumed = uninterrupted
        hw64 = os.path.join(ROOT, "configs", "hw", "reram-64-mild.cfg")
        xflags = ["--model", cnnt, "--epochs", "2", "--lr", "0.02", "--train-limit", "2560", "--eval-limit", "500",
                  "--xprune", "xrs", "--xprune-hw", hw64, "--xprune-target", "0.6", "--xprune-lasso", "1e-4",
                  "--xprune-start", "1", "--json", "--quiet", "--data", DATA]
        a, b = os.path.join(d, "xp-a"), os.path.join(d, "xp-b")
        rc, so, se = xbar("train", *xflags, "--out", a)
        ok = rc == 0
        if ok:
            xp = json.loads(so.strip().splitlines()[-1])["xprune"]
            ok = abs(xp["segments_cut"] / xp["segments"] - 0.6) < 0.01 and xp["crossbars_packed"] < xp["crossbars_dense"]
        check("--xprune xrs cuts 60% of every layer's row segments; fewer crossbars packed", ok,
              (so + se).strip()[-300:] if not ok else
              f"crossbars {xp['crossbars_dense']} -> {xp['crossbars_packed']}, utilization {xp['utilization']:.3f}")
        if ok:
            rc, so2, se2 = xbar("eval", "--model", cnnt, "--weights", os.path.join(a, "weights.safetensors"), "--hw",
                                hw64, "--pack", "rows", "--limit", "200", "--json", "--quiet", "--data", DATA)
            ok = rc == 0 and sum(l.get("arrays", 0) for l in json.loads(so2)["layers"]) == xp["crossbars_packed"]
            check("xbar eval --pack rows programs the crossbars --xprune reported", ok, (so2 + se2).strip()[-300:])
        rc1, _, se1 = xbar("train", *xflags, "--steps", "25", "--out", b)
        rc2, _, se2 = xbar("train", *xflags, "--resume", os.path.join(b, "checkpoint.safetensors"), "--out", b)
        ok = rc1 == 0 and rc2 == 0 and same_files(a, b, ("weights.safetensors",))
        check("--xprune stopped after the cut and resumed gives the same weights", ok, (se1 + se2).strip()[-300:])
        # errors a user can make
        rc, _, se = xbar("train", "--model", cnnt, "--prune", "magnitude", "--steps", "1", "--out",
                         os.path.join(d, "bad"), "--data", DATA)
        check("unknown --prune score: exit 1 naming it", rc == 1 and "magnitude" in se and "HINT" in se, se.strip()[-200:])
        rc, _, se = xbar("train", "--model", cnnt, "--prune", "l1", "--ad-precision", "--steps", "1", "--out",
                         os.path.join(d, "bad"), "--data", DATA)
        check("--prune with --ad-precision: exit 1", rc == 1 and "--prune" in se, se.strip()[-200:])
        rc, _, se = xbar("train", "--model", cnnt, "--prune", "l1", "--prune-target", "2", "--steps", "1", "--out",
                         os.path.join(d, "bad"), "--data", DATA)
        check("--prune-target out of range: exit 2 naming the flag", rc == 2 and "prune-target" in se, se.strip()[-200:])
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return summary("ref_prune")


if __name__ == "__main__":
    sys.exit(main())
