#!/usr/bin/env python3
"""ref_train.py -- `xbar train` end to end against PyTorch on the same data stream (run by tests/run_all.sh).

tests/ref_torch.py holds single optimizer steps on a given batch to PyTorch; this holds the whole
training loop: data order, augmentation, normalisation, learning-rate schedule, optimizer and
batchnorm state over several steps and across an epoch boundary.  The PyTorch twin starts from the
same weights (`xbar train --weights`) and is fed xbar's own batches, replayed by tools/torch_train.py
from xbar's random streams.  Training is chaotic at the rounding level, so after a few steps even
torch's float32 run sits measurably away from its float64 run; each tensor of xbar's result must be
within max(10 x torch float32's distance, 1e-4) of float64 (max|diff| / max|ref|), the per-epoch mean
losses likewise (floor 1e-5), and num_batches_tracked exact.

Runs (resnet20, starting weights torch.manual_seed(0)'s twin, 2 threads):
  * He et al.'s recipe (SGD momentum 0.9, lr 0.1 step schedule, weight decay 1e-4), 3 steps of 128;
  * Nesterov, cosine schedule, weight decay 5e-4, label smoothing 0.1, cutout 16 on the first 300
    training images: 4 steps = an epoch of 128 + 128 + 44 (a partial batch), a test-set evaluation, a reshuffle and one
    step of the next epoch;
  * stochastic weight averaging on the first 300 images: one cosine epoch from lr 0.02, then two epochs at
    the constant --swa-lr 0.01; the SWA weights (torch.optim.swa_utils.AveragedModel, then update_bn over
    the 300 images in order, unaugmented) are held to torch like the trained ones, num_batches_tracked = 3.
    The small rates keep the run's chaos low, so the check has teeth: the last weights in place of the
    average would miss it by 30x (measured 2026-11-22).

Data: $XBAR_DATA or ../shared/data/cifar10 (a failure if missing: CI always has it).  Binary: $XBAR_BIN.
Prints one line per check and ends with "ref_train: N passed, M failed".
"""
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import st_np  # noqa: E402
import torch_train as tt  # noqa: E402
import torch_zoo as tz  # noqa: E402

XBAR = os.environ.get("XBAR_BIN", os.path.join(ROOT, "build", "xbar"))
DATA = os.environ.get("XBAR_DATA", os.path.join(ROOT, "..", "shared", "data", "cifar10"))
N_PASS = N_FAIL = 0

RUNS = [
    # name, xbar flags, steps, train limit, seed
    ("He recipe", dict(optimizer="sgd", momentum=0.9, nesterov=False, lr=0.1, schedule="step", weight_decay=1e-4,
                       label_smoothing=0.0, cutout=0, epochs=164), 3, 0, 5),
    ("Nesterov cosine, label smoothing, cutout, 300 images", dict(optimizer="sgd", momentum=0.9, nesterov=True,
                                                                   lr=0.1, schedule="cosine", weight_decay=5e-4,
                                                                   label_smoothing=0.1, cutout=16, epochs=2),
     4, 300, 7),
    ("SWA, 300 images", dict(optimizer="sgd", momentum=0.9, nesterov=True, lr=0.02, schedule="cosine", weight_decay=5e-4,
                             label_smoothing=0.0, cutout=0, epochs=1, swa_epochs=2, swa_lr=0.01), 9, 300, 9),
]


def check(name, ok, detail=""):
    global N_PASS, N_FAIL
    N_PASS += bool(ok)
    N_FAIL += not ok
    print(f"{'PASS' if ok else 'FAIL'}  {name}{': ' + detail if detail else ''}", flush=True)
    return ok


def rel(a, ref):
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    return float(np.abs(a - ref).max() / max(np.abs(ref).max(), 1e-6))


def xbar_run(d, name, init, cfg, steps, limit, seed):
    out = os.path.join(d, "xbar")
    args = [XBAR, "train", "--model", "resnet20", "--data", DATA, "--weights", init, "--steps", steps,
            "--epochs", cfg["epochs"], "--batch", 128, "--optimizer", cfg["optimizer"], "--momentum",
            cfg["momentum"], "--lr", cfg["lr"], "--schedule", cfg["schedule"], "--weight-decay",
            cfg["weight_decay"], "--label-smoothing", cfg["label_smoothing"], "--cutout", cfg["cutout"], "--seed", seed, "--threads", 2,
            "--eval-limit", 500, "--out", out, "--json", "--quiet", "--swa-epochs", cfg.get("swa_epochs", 0),
            "--swa-lr", cfg.get("swa_lr", 0.01)]
    if cfg["nesterov"]:
        args.append("--nesterov")
    if limit:
        args += ["--train-limit", limit]
    r = subprocess.run([str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=600)
    if not check(f"{name}: xbar train runs", r.returncode == 0, f"exit {r.returncode}: {r.stderr.strip()[-300:]}"
                 if r.returncode else ""):
        return None, None, None
    # one line per epoch, a partial last one included, then the result line
    losses = [x["train_loss"] for x in map(json.loads, r.stdout.splitlines()) if "epoch" in x]
    swa = os.path.join(out, "swa-weights.safetensors")
    return st_np.load(os.path.join(out, "weights.safetensors")), losses, st_np.load(swa) if cfg.get("swa_epochs") else None


def torch_run(init, cfg, steps, limit, seed, dtype, images, labels):
    torch.set_num_threads(1)
    model = tz.load_weights(tz.build("resnet20"), init).to(dtype)
    if limit:
        images, labels = images[:limit], labels[:limit]
    stream = tt.XbarStream(images, labels, seed=seed, batch=128, cutout=cfg["cutout"])
    swa = torch.optim.swa_utils.AveragedModel(model) if cfg.get("swa_epochs") else None
    segs = tt.train(model, stream, steps, cfg["epochs"], cfg["optimizer"], cfg["lr"], cfg["momentum"],
                    cfg["nesterov"], cfg["weight_decay"], cfg["schedule"], cfg["label_smoothing"], dtype,
                    swa=swa, swa_lr=cfg.get("swa_lr", 0.01))
    state = lambda mod: {k: v.detach().numpy() for k, v in mod.state_dict().items()}  # noqa: E731
    if swa is not None:
        torch.optim.swa_utils.update_bn(tt.plain_batches(images, 128, dtype=dtype), swa)
        swa = state(swa.module)
    return state(model), [s[1] for s in segs], swa


def compare(what, got, r64, r32, nbt):
    """Every tensor of got within max(10 x float32's distance, 1e-4) of float64; num_batches_tracked == nbt."""
    bad, worst, worst_ratio = [], (0.0, ""), 0.0
    for k, ref in r64.items():
        if k.endswith("num_batches_tracked"):
            if int(np.asarray(got[k]).reshape(-1)[0]) != nbt:
                bad.append(f"{k}={got[k]} (want {nbt})")
            continue
        e, e32 = rel(got[k], ref), rel(r32[k], ref)
        tol = max(10 * e32, 1e-4)
        worst = max(worst, (e, k))
        worst_ratio = max(worst_ratio, e / tol)
        if e > tol:
            bad.append(f"{k} {e:.1e} (torch float32 {e32:.1e})")
    check(f"{what} vs torch float64", not bad, f"{len(r64)} tensors, worst {worst[1]} {worst[0]:.1e}, at "
          f"{worst_ratio:.2f} of its tolerance" if not bad else "; ".join(bad[:5]))


def main():
    t0 = time.time()
    if not os.access(XBAR, os.X_OK):
        check("xbar binary exists", False, f"{XBAR} not found: run make")
    elif not os.path.isfile(os.path.join(DATA, "data_batch_1.bin")):
        check("CIFAR-10 data", False, f"{DATA} has no data_batch_1.bin. HINT: set XBAR_DATA")
    else:
        images, labels = tt.load_cifar10_train(DATA)
        with tempfile.TemporaryDirectory(prefix="ref_train-") as d:
            torch.manual_seed(0)
            init = os.path.join(d, "init.safetensors")
            tz.save_weights(tz.build("resnet20"), init)
            for name, cfg, steps, limit, seed in RUNS:
                got, got_losses, got_swa = xbar_run(d, name, init, cfg, steps, limit, seed)
                if got is None:
                    continue
                r64, l64, s64 = torch_run(init, cfg, steps, limit, seed, torch.float64, images, labels)
                r32, l32, s32 = torch_run(init, cfg, steps, limit, seed, torch.float32, images, labels)
                compare(f"{name}: every parameter and buffer after {steps} steps", got, r64, r32, steps)
                if s64 is not None:
                    compare(f"{name}: the SWA weights and their batchnorm statistics", got_swa, s64, s32,
                            (min(limit or len(labels), len(labels)) + 127) // 128)
                ok = len(got_losses) == len(l64) and all(
                    abs(g - r) <= max(10 * abs(f - r), 1e-5) for g, r, f in zip(got_losses, l64, l32))
                check(f"{name}: per-epoch mean training loss", ok,
                      f"xbar {['%.6f' % v for v in got_losses]}, torch float64 {['%.6f' % v for v in l64]}, "
                      f"float32 {['%.6f' % v for v in l32]}")
    print(f"total {time.time() - t0:.1f}s")
    print(f"ref_train: {N_PASS} passed, {N_FAIL} failed")
    return 1 if N_FAIL else 0


if __name__ == "__main__":
    sys.exit(main())
