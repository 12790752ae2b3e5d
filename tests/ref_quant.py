#!/usr/bin/env python3
"""ref_quant.py -- the quantization-aware training quantizers (include/xb_quant.h) against PyTorch (run by
tests/run_all.sh with /usr/bin/python3: torch, numpy).

Drives tests/tool_quant.c (binary $XBAR_QUANT_TOOL, default build/tests/tool_quant; a missing binary is a
failure, not a skip), which applies one quantizer to a .npy array and writes its outputs as .npy files.

1. UNIFORM weights, per matrix and per row, 2..16 bits, against torch.fake_quantize_per_tensor_affine /
   torch.fake_quantize_per_channel_affine (zero point 0, quant_min -Q, quant_max Q, the scale xbar computed,
   passed as float32), on resnet20-like layers with a zero row and, for 2 and 4 bits, exact ties;
   torch's backward (the straight-through mask) against xbar's ste.
2. Activation quantizers UNIFORM, SIGNED and TERNARY: forward and mask against
   torch.fake_quantize_per_tensor_affine with xbar's step, lo and hi; values beyond the clip on both sides.
3. DOREFA weights, per matrix and per row, 1..8 bits, against a plain torch implementation of the formula
   (t = tanh(w) / (2 max|tanh(w)|) + 1/2, torch.round (ties to even), 2 q - 1), with torch autograd for the
   ste (max|tanh| held constant by .detach(), the rounding passed straight through).

torch computes rint(x * (1 / scale)), xbar rint(x / scale) (float32 both): the two quotients can fall on
either side of a half step when it is within an ulp or two.  numpy recomputes both in float32: every
difference must be one step where they round apart, their number is reported (a handful: random data), and
everything else must be equal to float rounding.  Exact ties are constructed where the scale is a power of
two, so that both quotients are exact and the two must agree (ties to even).  DOREFA's tanh differs
between the two (torch's vectorized tanh, xbar's qw_tanhf), so a code may round the other way where
t (2^b - 1) is within float error of a half step: at most a handful, reported.

Prints one line per check and ends with "ref_quant: N passed, M failed"; exit status 1 on failure.
"""
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.environ.get("XBAR_QUANT_TOOL", os.path.join(ROOT, "build", "tests", "tool_quant"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from refutil import check, summary  # noqa: E402


def run_tool(d, args, what):
    """Runs tool_quant with args; returns a dict of its outputs (name -> array) or None."""
    out = os.path.join(d, what.replace(" ", "_").replace(",", ""))
    os.makedirs(out, exist_ok=True)
    try:
        r = subprocess.run([TOOL] + [str(a) for a in args] + ["--out", out], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        check(f"{what}: tool_quant runs", False, str(e))
        return None
    if r.returncode != 0:
        check(f"{what}: tool_quant runs", False, f"exit {r.returncode}: {r.stderr.strip()[-300:]}")
        return None
    return {f[:-4]: np.load(os.path.join(out, f)) for f in os.listdir(out) if f.endswith(".npy")}


def save(d, name, a):
    p = os.path.join(d, name)
    np.save(p, np.ascontiguousarray(a, dtype=np.float32))
    return p


def f32(x):
    return np.asarray(x, dtype=np.float32)


def rounds_apart(x, scale, lo, hi):
    """Where xbar's code clamp(rint(x / scale)) and torch's clamp(rint(x * (1 / scale))), each quotient in
    float32, differ: the two quotients straddle a half step (scale broadcasts)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        q1 = np.clip(np.rint(f32(x) / f32(scale)), lo, hi)
        q2 = np.clip(np.rint(f32(x) * (np.float32(1) / f32(scale))), lo, hi)
    return q1 != q2


def compare_fq(what, got, ref, step, ties, tol=1e-6):
    """got (xbar) and ref (torch) fake-quantized values: equal to float rounding, or one step apart where ties
    says the two formulas round apart.  Returns the number of such differences (None on failure)."""
    d = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    step = np.broadcast_to(np.asarray(step, dtype=np.float64), got.shape)
    close = d <= tol * np.maximum(np.abs(ref), step)
    one_step = np.abs(d - step) <= 1e-5 * step + 3e-7 * np.abs(ref)  # values rounded to float32
    diff = ~close
    bad = diff & ~(one_step & ties)
    if bad.any():
        i = np.argwhere(bad)[0]
        check(f"{what}: values", False, f"{int(bad.sum())} differ away from ties; first at {tuple(i)}: "
              f"xbar {got[tuple(i)]!r}, torch {ref[tuple(i)]!r}")
        return None
    return int(diff.sum())


def weight_matrix(rng, rows, k, sd, zero_row=None):
    w = (rng.standard_normal((rows, k)) * sd).astype(np.float32)
    if zero_row is not None:
        w[zero_row] = 0
    return w


def exact_ties(w, bits, per_channel):
    """w with every half step of a power-of-two grid (s = 2^-4) in row 1 (and, per row, in every row) and
    the maximum Q s in each such row, so that s = 2^-4 exactly and x / s, x * (1 / s) are exact."""
    w = w.copy()
    Q = 2 ** (bits - 1) - 1
    s = 2.0 ** -4
    w = np.clip(w, -Q * s, Q * s)
    k = w.shape[1]
    for r in (range(w.shape[0]) if per_channel else [1]):
        if not np.any(w[r]):
            continue  # keep the zero row
        n = min(2 * Q, k - 1)
        c = (np.arange(n) % (2 * Q)) - Q + 0.5
        w[r, :n] = f32(c * s * (1 if r % 2 else -1))
        w[r, n] = Q * s
    return w


def part_uniform_weights(d):
    print("== uniform weights vs torch.fake_quantize_per_{tensor,channel}_affine")
    rng = np.random.default_rng(1)
    layers = [(16, 27, 0.3), (64, 576, 0.05), (10, 64, 0.2)]
    total, elements = 0, 0
    for rows, k, sd in layers:
        for per_channel in (0, 1):
            for bits in (2, 4, 8, 16):
                what = f"uniform {bits} bits {rows}x{k} {'per row' if per_channel else 'per matrix'}"
                Q = 2 ** (bits - 1) - 1
                w = weight_matrix(rng, rows, k, sd, zero_row=rows // 3)
                tied = bits in (2, 4)
                if tied:
                    w = exact_ties(w, bits, per_channel)
                    what += ", exact ties"
                p = save(d, "w.npy", w)
                args = ["weight", "--kind", "uniform", "--bits", bits, "--in", p] + (["--per-channel"] if per_channel
                                                                                    else [])
                o = run_tool(d, args, what)
                if o is None:
                    continue
                scale = o["scale"].reshape(-1).astype(np.float32)
                # the scale is max|w| / Q in float32 (1 for an all-zero row)
                m = np.abs(w).max(axis=1) if per_channel else np.abs(w).max(keepdims=True)
                want_s = np.where(m > 0, f32(m) / np.float32(Q), np.float32(1))
                if not check(f"{what}: scale = max|w| / Q", np.array_equal(scale, want_s.reshape(-1)),
                             f"xbar {scale[:4]}, want {want_s.reshape(-1)[:4]}"):
                    continue
                x = torch.from_numpy(w.copy()).requires_grad_(True)
                if per_channel:
                    ref = torch.fake_quantize_per_channel_affine(x, torch.from_numpy(scale),
                                                                 torch.zeros(rows, dtype=torch.int32), 0, -Q, Q)
                    sb = scale[:, None]
                else:
                    ref = torch.fake_quantize_per_tensor_affine(x, torch.from_numpy(scale),
                                                                torch.zeros(1, dtype=torch.int32), -Q, Q)
                    sb = scale[0]
                g = torch.from_numpy(rng.standard_normal(w.shape).astype(np.float32))
                ref.backward(g)
                ref = ref.detach().numpy()
                apart = rounds_apart(w, sb, -Q, Q)
                n = compare_fq(what, o["wq"], ref, sb, apart)
                if n is None:
                    continue
                total += n
                elements += w.size
                # xbar's codes are rint(w / s) in float32 exactly; values are s times them
                codes = np.clip(np.rint(f32(w) / f32(sb)), -Q, Q)
                ok_codes = np.array_equal(o["code"], codes) and np.array_equal(o["wq"], f32(o["code"] * f32(sb)))
                grad_ok = np.array_equal(x.grad.numpy(), o["ste"] * g.numpy())
                nties = int(np.sum(np.abs(f32(w) / f32(sb) - np.floor(f32(w) / f32(sb))) == 0.5))
                check(f"{what}", ok_codes and grad_ok and (not tied or (n == 0 and nties >= 2 * Q)),
                      f"{nties} exact ties, {n} rounded apart by torch's x * (1 / s)" +
                      ("" if ok_codes else "; codes are not rint(w / s) or values not s x code") +
                      ("" if grad_ok else "; torch's gradient differs from ste x dy"))
    check("uniform weights: differences with torch a handful", total <= 5 + elements // 2000,
          f"{total} in {elements} weights")


def part_activations(d):
    print("== activation quantizers vs torch.fake_quantize_per_tensor_affine")
    rng = np.random.default_rng(2)
    # (kind, bits, clip): power-of-two and other steps
    # (kind, bits, clip): steps powers of two (exact ties constructed) and not
    cases = [("uniform", 4, 3.75), ("uniform", 8, 2.5), ("uniform", 2, 1.0), ("signed", 4, 3.0), ("signed", 8, 1.7),
             ("signed", 3, 0.75), ("signed", 2, 0.5), ("ternary", 0, 0.8), ("ternary", 0, 0.5)]
    total, elements = 0, 0
    for kind, bits, clip in cases:
        what = f"act {kind}{' ' + str(bits) + ' bits' if bits else ''} clip {clip}"
        # the grid, in float32 as the header defines it; the tool's must be the same
        hi = np.float32(1 if kind == "ternary" else 2 ** (bits - 1) - 1 if kind == "signed" else 2 ** bits - 1)
        lo = np.float32(0 if kind == "uniform" else -hi)
        step = np.float32(clip) if kind == "ternary" else np.float32(clip) / hi
        tied = np.frexp(step)[0] == 0.5
        x = (rng.standard_normal((4, 3, 16, 16)) * clip * 0.7).astype(np.float32)
        dy = rng.standard_normal(x.shape).astype(np.float32)
        flat = x.reshape(-1)
        idx = rng.choice(flat.size, 200, replace=False)
        if tied:  # every half step of the grid and beyond it, exact
            what += ", exact ties"
            flat[idx[:150]] = (rng.integers(int(lo) - 2, int(hi) + 2, 150) + 0.5) * step
        flat[idx[150:]] = f32(rng.choice([-1, 1], 50) * (hi + 1 + rng.random(50) * 3) * np.float64(step))  # outside
        px, pd = save(d, "x.npy", x), save(d, "dy.npy", dy)
        o = run_tool(d, ["act", "--kind", kind, "--bits", bits, "--clip", clip, "--in", px, "--dy", pd], what)
        if o is None:
            continue
        if not check(f"{what}: grid (step, lo, hi)", np.array_equal(o["grid"], f32([step, lo, hi])),
                     f"xbar {o['grid']}, want {[step, lo, hi]}"):
            continue
        xt = torch.from_numpy(x.copy()).requires_grad_(True)
        ref = torch.fake_quantize_per_tensor_affine(xt, torch.tensor([step], dtype=torch.float32),
                                                    torch.zeros(1, dtype=torch.int32), int(lo), int(hi))
        ref.backward(torch.ones_like(ref))
        ref = ref.detach().numpy()
        tmask = xt.grad.numpy()
        apart = rounds_apart(x, step, lo, hi) | rounds_apart(x, step, -np.inf, np.inf)
        n = compare_fq(what, o["y"], ref, step, apart)
        if n is None:
            continue
        total += n
        elements += x.size
        nties = int(np.sum(np.abs(x / step - np.floor(x / step)) == 0.5))
        mask = o["mask"]
        # the mask: 1 where torch passes the gradient (a tie that torch rounds the other way may move an
        # element across the grid's end), 2 above, 0 below
        code = np.rint(f32(x) / step)
        mask_ok = np.array_equal(mask == 1, (code >= lo) & (code <= hi)) and \
            np.array_equal(mask == 2, code > hi) and np.array_equal(mask == 0, code < lo)
        mism = (mask == 1) != (tmask == 1)
        torch_ok = not (mism & ~apart).any()
        stats = o["stats"]
        bw_ok = np.array_equal(o["dx"], np.where(mask == 1, dy, np.float32(0))) and \
            abs(stats[1] - dy[mask == 2].astype(np.float64).sum()) <= 1e-9 * max(1, abs(stats[1])) and \
            stats[0] == (mask != 1).sum()
        check(what, mask_ok and torch_ok and bw_ok and (mask == 2).any() and (mask == 0).any() and
              (not tied or (n == 0 and nties > 100)),
              f"{nties} exact ties, {n} rounded apart, {int(mism.sum())} mask differences there; "
              f"{int((mask == 2).sum())} clipped at the top, {int((mask == 0).sum())} at the bottom" +
              ("" if mask_ok else "; mask is not where rint(x / step) is in [lo, hi]") +
              ("" if torch_ok else "; torch's gradient mask differs away from ties") +
              ("" if bw_ok else "; backward (dx, d alpha or the clipped count) is wrong"))
    check("activations: differences with torch a handful", total <= 5 + elements // 2000,
          f"{total} in {elements} values")


def dorefa_torch(w, bits, per_channel):
    """DoReFa in torch from the formula: values and d wq / d w (autograd, max|tanh| detached)."""
    n = 2 ** bits - 1
    x = torch.from_numpy(w.copy()).requires_grad_(True)
    th = torch.tanh(x)
    M = (th.abs().amax(dim=1, keepdim=True) if per_channel else th.abs().max()).detach()
    M = torch.where(M > 0, M, torch.ones_like(M))  # xbar's choice: an all-zero group takes max|tanh| = 1
    t = th / (2 * M) + 0.5
    q = t + (torch.round(t * n) / n - t).detach()  # round to nearest, ties to even; straight through
    wq = 2 * q - 1
    wq.backward(torch.ones_like(wq))
    return wq.detach().numpy(), x.grad.numpy(), (t * n).detach().numpy()


def part_dorefa(d):
    print("== dorefa weights vs a torch implementation of the formula")
    rng = np.random.default_rng(3)
    flips_total = 0
    for rows, k, sd in [(16, 27, 0.8), (64, 576, 0.05), (10, 64, 1.5)]:
        for per_channel in (0, 1):
            for bits in (1, 2, 4, 8):
                what = f"dorefa {bits} bits {rows}x{k} {'per row' if per_channel else 'per matrix'}"
                w = weight_matrix(rng, rows, k, sd, zero_row=rows // 2)
                w[0, :3] = 0  # t = 1/2: exact ties
                p = save(d, "w.npy", w)
                o = run_tool(d, ["weight", "--kind", "dorefa", "--bits", bits, "--in", p] +
                             (["--per-channel"] if per_channel else []), what)
                if o is None:
                    continue
                ref, grad, tn = dorefa_torch(w, bits, per_channel)
                dv = np.abs(o["wq"].astype(np.float64) - ref)
                step = 2.0 / (2 ** bits - 1)
                near = np.abs(tn - np.floor(tn) - 0.5) < (2 ** bits - 1) * 2.0 ** -19 + 1e-6  # float32 error of t n
                flips = dv > 1e-6
                bad = flips & ~(near & (np.abs(dv - step) < 1e-5 * step + 3e-7))
                ste_err = np.abs(o["ste"] - grad) / np.maximum(1, np.abs(grad))
                scale_ok = np.allclose(o["scale"], 1.0 / (2 ** bits - 1), rtol=1e-7)
                flips_total += int(flips.sum())
                check(what, not bad.any() and ste_err.max() <= 1e-5 and scale_ok and int(flips.sum()) <= 3,
                      f"{int(flips.sum())} codes one step off at near-ties, ste max rel err {ste_err.max():.1e}" +
                      (f"; {int(bad.sum())} values differ otherwise (first: xbar {o['wq'][bad][0]!r}, torch "
                       f"{ref[bad][0]!r})" if bad.any() else "") + ("" if scale_ok else "; scale is not 1/(2^b-1)"))
    check("dorefa: near-tie differences with torch, a handful", flips_total <= 6, f"{flips_total} in all")


def main():
    t0 = time.time()
    torch.set_num_threads(1)
    if not (os.path.isfile(TOOL) and os.access(TOOL, os.X_OK)):
        check("tool_quant exists", False, f"{TOOL} not found. HINT: make build/tests/tool_quant (or set "
                                          f"XBAR_QUANT_TOOL); the checks did not run")
    else:
        with tempfile.TemporaryDirectory(prefix="ref_quant-") as d:
            for part in (part_uniform_weights, part_activations, part_dorefa):
                try:
                    part(d)
                except Exception as e:  # a crash in one part is a failure, and the others still run
                    import traceback
                    traceback.print_exc()
                    check(f"{part.__name__} completes", False, f"{type(e).__name__}: {e}")
    print(f"total {time.time() - t0:.1f}s")
    return summary("ref_quant")


if __name__ == "__main__":
    sys.exit(main())
