#!/usr/bin/env python3
"""ref_qat.py -- quantized models leave xbar for PyTorch (run by tests/run_all.sh with /usr/bin/python3).

A short quantization-aware `xbar train` run per quantizer family writes OUT/model.cfg (with [quant]
activation layers) and OUT/weights.safetensors (the quantized weights); tools/torch_zoo.py's CfgNet builds
the model from that .cfg, loads the weights strictly, and gives `xbar infer`'s logits (eval mode; a
handful of half-step ties may round apart, so the check is on the logits' relative error).  Then
`xbar eval` of the quantized model equals the run's own last test accuracy, and `xbar info` lists
each layer's precision.

Binary: $XBAR_BIN (default build/xbar).  Data: $XBAR_DATA or ../shared/data/cifar10.
Prints one line per check and ends with "ref_qat: N passed, M failed".
"""
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from refutil import DATA, ROOT, XBAR, check, summary  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "tools"))
import torch_zoo  # noqa: E402


def xbar(*args):
    """one thread: the suite may share the machine, and this is about results, not speed"""
    args = list(args) + (["--threads", "1"] if args and args[0] in ("train", "eval", "infer") else [])
    r = subprocess.run([XBAR] + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
    return r.returncode, r.stdout, r.stderr


CASES = [
    ("uniform w4a4, calibrated clips", ["--weight-bits", "4", "--act-bits", "4"]),
    ("ternary-sym weights, PACT 3-bit activations", ["--quant", "ternary-sym", "--act", "pact", "--act-bits", "3", "--act-clip", "2",
                                                     "--first-bits", "8", "--last-bits", "8"]),
    ("DoReFa w2a2", ["--quant", "dorefa", "--weight-bits", "2", "--act-bits", "2"]),
    ("binary weights, 8-bit activations, per-tensor scale", ["--quant", "binary", "--act-bits", "8"]),
]


def tie_samples(net):
    """hooks every activation quantizer of net; after a forward, ties[i] says whether image i had an input x with
    x/step within 1e-4 of a rounding boundary k + 1/2 in some quantizer"""
    ties = collections.defaultdict(bool)

    def hook(mod, inp, out):
        if mod.mode in ("pact", "dorefa", "ternary"):
            return
        c = mod.clip if mod.calibrated else torch.tensor([mod.fixed])
        hi = float(2 ** (mod.bits - 1) - 1) if mod.mode == "signed" else float(2 ** mod.bits - 1)
        u = (inp[0] / (c / hi)).detach().numpy()
        near = np.abs(u - np.floor(u) - 0.5) < 1e-4
        for i in range(u.shape[0]):
            ties[i] |= bool(near[i].any())
    for m in net.modules():
        if isinstance(m, torch_zoo.Quant):
            m.register_forward_hook(hook)
    return ties


def main():
    if not os.path.isfile(os.path.join(DATA, "test_batch.bin")):
        check("CIFAR-10 present", False, f"{DATA}: no test_batch.bin")
        return summary("ref_qat")
    d = tempfile.mkdtemp(prefix="ref_qat-")
    try:
        x = np.random.default_rng(1).standard_normal((16, 3, 32, 32)).astype(np.float32)
        xp = os.path.join(d, "x.npy")
        np.save(xp, x)
        for k, (name, flags) in enumerate(CASES):
            out = os.path.join(d, f"run{k}")
            extra = []
            if "per-tensor" in name:
                qc = os.path.join(d, "tensor.cfg")
                open(qc, "w").write("[quantize]\nweight_scale = tensor\n")
                extra = ["--quant-config", qc]
            rc, so, se = xbar("train", "--model", "lenet5", *flags, *extra, "--steps", "100", "--train-limit", "12800",
                              "--eval-limit", "1000", "--lr", "0.02", "--out", out, "--json", "--quiet",
                              "--data", DATA)
            if not check(f"{name}: train", rc == 0, se.strip()[-300:]):
                continue
            res = json.loads(so.strip().splitlines()[-1])
            cfg, w = os.path.join(out, "model.cfg"), os.path.join(out, "weights.safetensors")
            yp = os.path.join(out, "y.npy")
            rc, _, se = xbar("infer", "--model", cfg, "--weights", w, "--input", xp, "--out", yp)
            if not check(f"{name}: xbar infer of OUT/model.cfg", rc == 0, se.strip()[-300:]):
                continue
            net = torch_zoo.CfgNet(cfg)
            try:
                torch_zoo.load_weights(net, w)
                loaded = True
            except Exception as e:  # noqa: BLE001
                loaded = False
                check(f"{name}: PyTorch loads the weights strictly", False, str(e)[:300])
            if loaded:
                check(f"{name}: PyTorch loads the weights strictly", True)
                net.eval()
                ties = tie_samples(net)
                with torch.no_grad():
                    ref = net(torch.from_numpy(x)).numpy()
                got = np.load(yp)
                err = np.abs(got - ref).max(axis=1) / max(np.abs(ref).max(), 1e-30)
                # an image may differ only where one of PyTorch's own quantizer inputs sits on a rounding boundary
                # (x/step within 1e-4 of k + 1/2): there the two sums' last-bit differences pick different codes
                bad = [i for i in range(len(err)) if err[i] >= 1e-4]
                tie = [i for i in bad if ties[i]]
                check(f"{name}: logits equal PyTorch's (CfgNet of model.cfg)", len(tie) == len(bad) and len(bad) <= 2,
                      f"max rel {err.max():.2e}; {len(bad)} of {len(err)} images differ, {len(tie)} of them on a "
                      f"rounding tie")
            rc, so, se = xbar("eval", "--model", cfg, "--weights", w, "--limit", "1000", "--json", "--quiet",
                              "--data", DATA)
            ok = rc == 0 and abs(json.loads(so)["accuracy"] - res["test_acc"]) < 1e-9
            check(f"{name}: xbar eval of the export = the run's test accuracy", ok,
                  f"{so.strip()[:120]} vs {res['test_acc']}")
            rc, so, se = xbar("info", "--model", cfg, "--json")
            ok = False
            if rc == 0:
                j = json.loads(so)
                ok = len(j["precision"]["weights"]) == 5 and len(j["precision"]["activations"]) == 4
            check(f"{name}: xbar info --json lists the precisions", ok, so.strip()[:200] if not ok else "")
        # activation-density precision: bits fall during training; stopped and resumed = uninterrupted
        common = ["--model", "lenet5", "--ad-precision", "--ad-window", "1", "--ad-tol", "0.05", "--epochs", "3",
                  "--train-limit", "2560", "--eval-limit", "500", "--json", "--quiet", "--data", DATA]
        a, b = os.path.join(d, "ad-a"), os.path.join(d, "ad-b")
        rc, so, se = xbar("train", *common, "--out", a)
        ok = rc == 0
        if ok:
            j = json.loads(so.strip().splitlines()[-1])
            bits = [u["bits"] for u in j["ad_precision"]["layers"]]
            ok = min(bits) < 16 and j["ad_precision"]["mac_reduction"] > 1
        check("--ad-precision lowers bits as activation density settles", ok, (so + se).strip()[-300:] if not ok else
              f"bits {bits}, MAC reduction {j['ad_precision']['mac_reduction']:.2f}x")
        rc1, _, se1 = xbar("train", *common, "--steps", "30", "--out", b)
        rc2, so2, se2 = xbar("train", *common, "--resume", os.path.join(b, "checkpoint.safetensors"), "--out", b)
        same = rc1 == 0 and rc2 == 0 and open(os.path.join(a, "weights.safetensors"), "rb").read() == \
            open(os.path.join(b, "weights.safetensors"), "rb").read() and \
            json.load(open(os.path.join(a, "ad-state.json"))) == json.load(open(os.path.join(b, "ad-state.json"))) and \
            open(os.path.join(a, "model.cfg")).read() == open(os.path.join(b, "model.cfg")).read()
        check("--ad-precision stopped mid-epoch and resumed gives the same weights, state and model.cfg", same,
              (se1 + se2).strip()[-300:])
        # activation-density pruning: real surgery during training; stopped after a cut and resumed = uninterrupted
        cnnt = os.path.join(ROOT, "configs", "exp", "cnn-t.cfg")
        common = ["--model", cnnt, "--ad-precision", "--ad-prune", "--ad-window", "1", "--ad-tol", "0.05",
                  "--epochs", "4", "--lr", "0.02", "--train-limit", "2560", "--eval-limit", "500", "--json", "--quiet",
                  "--data", DATA]
        a, b = os.path.join(d, "adp-a"), os.path.join(d, "adp-b")
        rc, so, se = xbar("train", *common, "--out", a)
        ok = rc == 0
        if ok:
            j = json.loads(so.strip().splitlines()[-1])["ad_precision"]
            ok = j["surgeries"] >= 1 and j["params"] < j["params_start"] and j["macs"] < j["macs_start"]
        check("--ad-prune cuts channels during training", ok, (so + se).strip()[-300:] if not ok else
              f"{j['params_start']} -> {j['params']} parameters, {j['surgeries']} surgeries")
        if ok:
            rc, so2, _ = xbar("eval", "--model", os.path.join(a, "model.cfg"), "--weights",
                              os.path.join(a, "weights.safetensors"), "--limit", "500", "--json", "--quiet", "--data", DATA)
            res = json.loads(so.strip().splitlines()[-1])
            check("the pruned OUT/model.cfg with its weights gives the run's final test accuracy",
                  rc == 0 and abs(json.loads(so2)["accuracy"] - res["test_acc"]) < 1e-9, so2.strip()[:200])
            steps = 20 * 3 + 5  # inside epoch 4, after the cut at epoch 3's start
            rc1, _, se1 = xbar("train", *common, "--steps", str(steps), "--out", b)
            rc2, _, se2 = xbar("train", *common, "--resume", os.path.join(b, "checkpoint.safetensors"), "--out", b)
            same = rc1 == 0 and rc2 == 0 and all(open(os.path.join(a, f), "rb").read() == open(os.path.join(b, f), "rb").read()
                                                 for f in ("weights.safetensors", "model.cfg"))
            check("--ad-prune stopped after a cut and resumed gives the same weights and model.cfg", same,
                  (se1 + se2).strip()[-300:])
        rc, so, se = xbar("train", *[c if c != "4" else "5" for c in common], "--ad-prune-cuts", "1", "--out",
                          os.path.join(d, "adp-c"))
        ok = rc == 0 and json.loads(so.strip().splitlines()[-1])["ad_precision"]["surgeries"] == 1
        check("--ad-prune-cuts 1: one surgery over five epochs", ok, (so + se).strip()[-200:] if not ok else "")
        # errors a user can make
        qbad = os.path.join(d, "bad.cfg")
        open(qbad, "w").write("[quantize]\nweight_bits = 4\n[quantize conv9.weight]\nweight_bits = 2\n")
        rc, _, se = xbar("train", "--model", "lenet5", "--quant-config", qbad, "--steps", "1", "--out",
                         os.path.join(d, "bad"), "--data", DATA)
        check("unknown layer in --quant-config: exit 1 with file:line", rc == 1 and "bad.cfg:3" in se and "conv9" in se
              and "HINT" in se, se.strip()[-200:])
        rc, _, se = xbar("train", "--model", "lenet5", "--quant", "quaternary", "--steps", "1", "--out",
                         os.path.join(d, "bad"), "--data", DATA)
        check("unknown --quant: exit 1 naming the flag", rc == 1 and "--quant" in se and "HINT" in se, se.strip()[-200:])
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return summary("ref_qat")


if __name__ == "__main__":
    sys.exit(main())
