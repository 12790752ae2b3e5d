#!/usr/bin/env python3
"""ref_torch.py -- xbar against PyTorch (run by tests/run_all.sh with /usr/bin/python3: torch, numpy).

Part (a), the zoo configs: for every model in configs/models/, the hand-written PyTorch twin of
tools/torch_zoo.py (written as the reference repositories write it) and CfgNet, the generic interpreter
of the .cfg, have the same state_dict (names in order, shapes, dtypes) and, with the same weights, the
same outputs on a random batch in eval and in train mode (and the same state after the train-mode
forward).  That proves the configs describe the reference models.  Also: the configs are what
tools/gen_zoo.py writes, CfgNet rejects bad configs, and tools/st_np.py round-trips every dtype.

Part (b), the C engine: drives tests/tool_refstep.c (binary $XBAR_REFSTEP, default
build/tests/tool_refstep; a missing binary is a failure, not a skip):

    tool_refstep --model NAME --weights W.safetensors --input X.npy --labels Y.npy --optimizer sgd|adam
                 --steps K --lr LR --momentum M --weight-decay WD --label-smoothing E --out OUT.safetensors

In train mode step k = 0..K-1 is forward + backward + update on the same batch; OUT holds "logits" and
"loss" of the first forward, "grad.<param>" of the first backward, "loss.<k>" of every step and
"param.<name>" of every parameter and buffer after the K updates (the BN buffers have seen K batches).
The reference is the twin in PyTorch, in float64 from the same float32 weights (the exact answer; torch's
own float32 CPU result is computed too, and where it is itself further than a tolerance from float64
the C engine may be up to 10x as far -- on vgg8 torch float32's gradients are up to 3e-2 off at init and
its parameters 0.24 off after 3 SGD steps of lr 0.1, while the loss falls from 2.4 to 4e-4).  Optimizers
are torch.optim.SGD / Adam over model.parameters() in one group (weight decay on every parameter), loss
F.cross_entropy(label_smoothing=E).

For resnet20, vgg8 and mlp (batch 8, N(0,1) inputs, torch.manual_seed(0) weights):
  * SGD (lr 0.1, momentum 0.9, wd 5e-4) and Adam (lr 1e-3, label smoothing 0.1), 3 steps end to end:
    logits (max|diff|/max|ref| <= 1e-4), loss and loss.k (1e-5), every gradient (1e-3), and every
    parameter and buffer after the 3 steps (1e-3, denominator max(max|ref|, 1e-6)),
    num_batches_tracked exactly.  Under Adam the biases whose exact gradient is zero (see below) are
    held to the most two runs of 3 Adam steps can differ (2 lr sum_t B_t = 6.01 lr, B_t the Cauchy-
    Schwarz bound on |m_hat|/sqrt(v_hat)): Adam turns their noise-level gradient into steps of about lr
    in a direction rounding decides, so nothing tighter holds for any float implementation.
  * Replay, both optimizers, every one of the 3 steps: step k again from the tool's own state after
    k-1 steps (its --steps k-1 output) with the tool's own gradients there (a --steps 1 run from that
    state) and torch's optimizer state built from the same gradients: the tool's parameters after k
    steps must equal torch's optimizer step to float32 rounding, its BN buffers one float64 forward
    (1e-3), and its gradients after training steps float64 torch (1e-3 or 10x torch float32's error).
    This is the exact check of xbar's Adam (and SGD) after 3 steps.
  * Biases of conv/linear layers that feed a batchnorm have a gradient that is zero in exact math
    (train-mode BN subtracts the batch mean): both sides hold rounding noise there, so those gradients
    are only checked to be < 1e-3 of their layer's weight gradient.
  * resnet20's SGD run once more as training runs it: two threads, and the batch of 8 in a model planned
    for 13 (--plan-batch; every epoch's last batch is smaller than the rest), same checks.
  * One eval-mode run (--eval: "logits" only) of vgg8 with non-trivial BN running statistics (1e-4).

Prints one line per check and ends with "ref_torch: N passed, M failed"; exit status 1 on failure.
REF_VERBOSE=1 prints every tensor's error.
"""
import copy
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import gen_zoo  # noqa: E402
import st_np  # noqa: E402
import torch_zoo as tz  # noqa: E402

torch.set_num_threads(1)
VERBOSE = os.environ.get("REF_VERBOSE") == "1"
N_PASS = 0
N_FAIL = 0


def info(name, ok, detail=""):
    """Like check, printed but not counted: for comparisons known to be ill-conditioned (see callers)."""
    print(f"INFO  {name}{': ' + detail if detail else ''} ({'within' if ok else 'over'} tolerance; not counted)")
    return ok


def check(name, ok, detail=""):
    global N_PASS, N_FAIL
    if ok:
        N_PASS += 1
    else:
        N_FAIL += 1
    print(f"{'PASS' if ok else 'FAIL'}  {name}{': ' + detail if detail else ''}", flush=True)
    return ok


def rel_err(got, ref, floor=1e-30):
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if got.size == 0:
        return 0.0
    d = np.abs(got - ref).max()
    if not np.isfinite(d):
        return float("inf")
    return float(d / max(float(np.abs(ref).max()), floor))


# ---------------------------------------------------------------------------------------------------
# Part (a): the configs describe the reference models
# ---------------------------------------------------------------------------------------------------

def part_a():
    print("== part (a): zoo configs vs hand-written PyTorch twins")
    stale = [n for n in gen_zoo.MODELS
             if not os.path.exists(tz.zoo_cfg_path(n)) or open(tz.zoo_cfg_path(n)).read() != gen_zoo.cfg_text(n)]
    check("configs/models/*.cfg == tools/gen_zoo.py output", not stale,
          f"stale: {', '.join(stale)} (HINT: python3 tools/gen_zoo.py)" if stale else f"{len(gen_zoo.MODELS)} files")
    missing = [n for n in tz.NAMES if n not in gen_zoo.MODELS]
    check("every twin has a config", not missing, ", ".join(missing))

    for name in tz.NAMES:
        torch.manual_seed(1)
        twin = tz.build(name)
        try:
            net = tz.CfgNet(tz.zoo_cfg_path(name))
        except (tz.CfgError, OSError) as e:
            check(f"{name}: CfgNet builds", False, str(e))
            continue
        sa, sb = twin.state_dict(), net.state_dict()
        la = [(k, tuple(v.shape), v.dtype) for k, v in sa.items()]
        lb = [(k, tuple(v.shape), v.dtype) for k, v in sb.items()]
        if la == lb:
            check(f"{name}: state_dict names, order, shapes, dtypes", True, f"{len(la)} tensors")
        else:
            diff = sorted(set(la) ^ set(lb), key=str)[:6]
            check(f"{name}: state_dict names, order, shapes, dtypes", False,
                  f"twin {len(la)} vs cfg {len(lb)} tensors; differ: {diff}" if diff else "same set, other order")
            continue
        # non-trivial BN state so that eval mode means something
        g = torch.Generator().manual_seed(2)
        with torch.no_grad():
            for k, v in sa.items():
                if k.endswith("running_mean"):
                    v.copy_(0.2 * torch.randn(v.shape, generator=g))
                elif k.endswith("running_var"):
                    v.copy_(0.5 + torch.rand(v.shape, generator=g))
                elif v.dim() == 1 and k.endswith(".weight"):  # batchnorm scales
                    v.copy_(1 + 0.1 * torch.randn(v.shape, generator=g))
        net.load_state_dict(sa, strict=True)
        x = torch.randn(4, 3, 32, 32, generator=g)
        for mode in ("eval", "train"):
            twin.train(mode == "train")
            net.train(mode == "train")
            with torch.no_grad():
                ya, yb = twin(x), net(x)
            e = rel_err(yb, ya)
            check(f"{name}: {mode}-mode logits twin vs cfg", e <= 1e-6 and ya.shape == yb.shape,
                  f"shape {tuple(yb.shape)}, rel err {e:.1e}{' (bitwise equal)' if torch.equal(ya, yb) else ''}")
        sa2, sb2 = twin.state_dict(), net.state_dict()
        worst = max((rel_err(sb2[k], sa2[k], 1e-6), k) for k in sa2)
        check(f"{name}: state after train forward twin vs cfg", worst[0] <= 1e-6,
              f"worst {worst[1]} rel err {worst[0]:.1e}")

    # the .cfg interpreter refuses what the C parser refuses
    bad = {"unknown key": "[net]\ninput = 3x32x32\nclasses = 10\n[conv2d c]\nout_channels = 10\nkernel = 32\nstide = 1\n",
           "wrong classes": "[net]\ninput = 3x32x32\nclasses = 10\n[flatten f]\n[linear fc]\nout_features = 9\n",
           "bad input": "[net]\ninput = 3x32x32\nclasses = 10\n[flatten f]\ninput = nowhere\n[linear fc]\nout_features = 10\n"}
    for what, text in bad.items():
        try:
            tz.CfgNet(text)
            check(f"CfgNet rejects {what}", False, "accepted")
        except tz.CfgError as e:
            check(f"CfgNet rejects {what}", True, str(e))

    # st_np: every dtype, metadata, scalars, empty tensors; and a twin's weights round-trip strictly
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "t.safetensors")
        rng = np.random.default_rng(0)
        t = {"f32": rng.standard_normal((2, 3)).astype(np.float32), "f64": rng.standard_normal(5),
             "i64": np.array(7, dtype=np.int64), "i32": np.arange(6, dtype=np.int32).reshape(1, 2, 3),
             "u8": np.arange(250, 256, dtype=np.uint8), "empty": np.zeros((0, 4), np.float32)}
        st_np.save(p, t, metadata={"model": "x", "n": 3})
        back, meta = st_np.load(p, with_metadata=True)
        raw = open(p, "rb").read()
        hlen = int.from_bytes(raw[:8], "little")
        ok = (list(back) == list(t) and meta == {"model": "x", "n": "3"} and hlen % 8 == 0 and
              all(back[k].dtype == t[k].dtype and back[k].shape == t[k].shape and np.array_equal(back[k], t[k])
                  for k in t))
        check("st_np round trip (F32 F64 I64 I32 U8, scalar, empty, metadata)", ok)
        with open(p, "r+b") as f:
            f.truncate(len(raw) - 1)
        try:
            st_np.load(p)
            check("st_np rejects a truncated file", False, "accepted")
        except st_np.SafetensorsError as e:
            check("st_np rejects a truncated file", True, str(e))
        torch.manual_seed(3)
        a = tz.build("resnet20")
        tz.save_weights(a, p)
        b = tz.load_weights(tz.build("resnet20"), p)
        same = all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
        check("resnet20 twin weights -> safetensors -> twin", same and
              b.state_dict()["bn1.num_batches_tracked"].dtype == torch.int64)


# ---------------------------------------------------------------------------------------------------
# Part (b): the C engine against PyTorch
# ---------------------------------------------------------------------------------------------------

def zero_grad_biases(name):
    """Bias parameters whose layer output feeds only batchnorm layers (gradient zero in exact math)."""
    net = tz.CfgNet(tz.zoo_cfg_path(name))
    consumers = {}
    for lname, typ, ins in net.graph:
        for i in ins:
            consumers.setdefault(i, []).append(typ)
    out = set()
    for lname, typ, ins in net.graph:
        if typ in ("conv2d", "linear") and net.layer(lname).bias is not None:
            if consumers.get(lname) and all(t == "batchnorm" for t in consumers[lname]):
                out.add(lname + ".bias")
    return out


def make_opt(model, opt, lr, mom, wd):
    if opt == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=mom, weight_decay=wd)
    return torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd)


def reference(name, init_state, x, y, opt, steps, lr, mom, wd, ls, dtype):
    """What tool_refstep writes, computed by the twin in PyTorch with the given dtype."""
    model = tz.build(name)
    model.load_state_dict(init_state)
    model.to(dtype)
    x = x.to(dtype)
    model.train()
    o = make_opt(model, opt, lr, mom, wd)
    ref = {}
    for k in range(steps):
        o.zero_grad()
        out = model(x)
        loss = F.cross_entropy(out, y, label_smoothing=ls)
        loss.backward()
        if k == 0:
            ref["logits"] = out.detach().numpy().copy()
            ref["loss"] = np.array([loss.item()])
            for n, p in model.named_parameters():
                ref["grad." + n] = p.grad.numpy().copy()
        ref[f"loss.{k}"] = np.array([loss.item()])
        o.step()
    for n, t in model.state_dict().items():
        ref["param." + n] = t.numpy().copy()
    return ref


def run_tool(tool, args, what):
    t0 = time.time()
    try:
        r = subprocess.run([tool] + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1"))
    except (OSError, subprocess.TimeoutExpired) as e:
        return check(f"{what}: tool_refstep runs", False, str(e))
    tail = r.stdout.decode(errors="replace").strip().splitlines()[-5:]
    return check(f"{what}: tool_refstep runs", r.returncode == 0,
                 f"{time.time() - t0:.1f}s" if r.returncode == 0 else f"exit {r.returncode}: {' | '.join(tail)}")


def compare_group(what, keys, got, ref, tol, floor=1e-30, ref32=None, special=None, report=None):
    """One check over a group of tensors.  Tensor k passes when max|got-ref| / max(max|ref|, floor) <= tol,
    or, given ref32 (torch's own float32 result), <= 10x torch float32's error against ref -- the C engine
    may be as far from exact as PyTorch itself is, within an order of magnitude.  special[k](got, ref) -> (ok, err,
    note) replaces the rule for k.  Prints the worst tensor and every failure."""
    missing = [k for k in keys if k not in got]
    if missing:
        return (report or check)(what, False, f"missing from tool output: {', '.join(missing[:5])}"
                                  f"{' ...' if len(missing) > 5 else ''} ({len(missing)} of {len(keys)})")
    worst, worst_k, worst_tol, bad, widened = -1.0, "-", tol, [], 0
    for k in keys:
        g, r = got[k], ref[k]
        tk, note = tol, ""
        if special and k in special:
            ok, e, note = special[k](g, r)
        elif np.shape(g) != np.shape(r) and not (np.size(g) == np.size(r) == 1):
            ok, e, note = False, float("inf"), f"shape {np.shape(g)} != {np.shape(r)}"
        elif r.dtype == np.int64:
            ok = np.issubdtype(g.dtype, np.integer) and np.array_equal(np.reshape(g, r.shape), r)
            e, note = (0.0 if ok else float("inf")), f"{g.dtype} {np.ravel(g)[:3]} vs {np.ravel(r)[:3]}"
        else:
            e = rel_err(np.reshape(g, r.shape), r, floor)
            if ref32 is not None and k in ref32:
                e32 = rel_err(ref32[k], r, floor)
                if 10 * e32 > tol:
                    tk, widened, note = 10 * e32, widened + 1, f"torch float32 itself: {e32:.1e}"
            ok = e <= tk
        if VERBOSE or not ok:
            print(f"      {k:<44} rel err {e:.2e} (tol {tk:.1e}){'  ' + note if note else ''}"
                  f"{'' if ok else '  <-- FAIL'}")
        if not ok:
            bad.append(k)
        if e / max(tk, 1e-300) > worst / max(worst_tol, 1e-300):
            worst, worst_k, worst_tol = e, k, tk
    return (report or check)(what, not bad, f"{len(keys)} tensors, worst {worst_k} {worst:.1e} (tol {worst_tol:.1e})"
                 + (f"; {widened} tolerances widened to 10x torch float32's own error" if widened else "")
                 + (f"; {len(bad)} over: {', '.join(bad[:4])}" if bad else ""))


def load_c_state(model, got, what):
    """Loads the tool's "param.*" tensors (parameters and buffers) into model in place."""
    sd = {k[len("param."):]: torch.from_numpy(np.ascontiguousarray(v)) for k, v in got.items() if k.startswith("param.")}
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    if missing:
        check(f"{what}: tool output has every param.*", False, f"missing {', '.join(missing[:4])}")
        return False
    model.load_state_dict({k: sd[k].reshape(own[k].shape).to(own[k].dtype) for k in own}, strict=True)
    return True


def replay(name, what, init_state, x, y, outs, grad_at, opt_kind, lr, mom, wd, ls, zb):
    """The optimizer one step at a time from the C engine's own state and gradients, in float64.

    Step k starts from the tool's parameters and buffers after k-1 steps (the initial weights for k = 1,
    else outs[k-1], a run with --steps k-1) and takes the tool's gradient at that point (grad_at(k): the
    "grad.*" of a --steps 1 run from there) and torch's optimizer state built from the same gradients;
    the result must match the tool's state after k steps (outs[k]) to float32 rounding: max|diff| <=
    1e-6 max|p| + 1e-5 lr max|step direction|.  Buffers must agree to 1e-3 with one float64 train-mode
    forward at that point.  Unlike the K-step comparison this does not amplify rounding through the
    training dynamics, so it can be strict.  For k >= 2 it also checks the tool's gradients at that
    point (after training steps, where the network can be far worse conditioned than at init) against
    float64 torch: 1e-3, or 10x torch float32's own error there."""
    model = tz.build(name)
    model.load_state_dict(init_state)
    model.double()
    opt = make_opt(model, opt_kind, lr, mom, wd)
    params = dict(model.named_parameters())
    m32 = tz.build(name)
    for k in range(1, len(outs)):
        gc = grad_at(k)
        if gc is None:
            return
        if k > 1:
            if not (load_c_state(model, outs[k - 1], what) and load_c_state(m32, outs[k - 1], what)):
                return
            m32.train()
            m32.zero_grad()
            F.cross_entropy(m32(x), y, label_smoothing=ls).backward()
            g32 = {"grad." + n: p.grad.numpy().copy() for n, p in m32.named_parameters()}
        model.train()
        opt.zero_grad()
        F.cross_entropy(model(x.double()), y, label_smoothing=ls).backward()  # moves the BN buffers one batch
        g64 = {"grad." + n: p.grad.numpy().copy() for n, p in params.items()}
        if k > 1:
            wmax = {n[len("grad."):-len(".weight")]: float(np.abs(v).max()) for n, v in g64.items()
                    if n.endswith(".weight")}
            special = {f"grad.{b}": (lambda gv, rv, L=b[:-len(".bias")]: (
                float(np.abs(gv).max()) <= 1e-3 * wmax[L], float(np.abs(gv).max()) / wmax[L],
                "zero in exact math: max|grad| / max|weight grad|")) for b in zb}
            # vgg8 on a batch of 8 lands after one SGD step (lr 0.1) on a degenerate point: about half of one
            # batchnorm's outputs lie within 1e-6 of the ReLU kink, so float32 rounding decides their side and
            # any float32 implementation (PyTorch's too, at xbar's point) can be 1e-2 off there.  Reported only.
            compare_group(f"{what}: gradients at the tool's point after {k - 1} step{'s' if k > 2 else ''}",
                          list(g64), gc, g64, 1e-3, ref32=g32, special=special,
                          report=info if name == "vgg8" else None)
        for n, p in params.items():
            key = "grad." + n
            if key not in gc:
                check(f"{what} replay step {k}", False, f"tool output lacks {key}")
                return
            p.grad.copy_(torch.from_numpy(np.reshape(gc[key], tuple(p.shape)).astype(np.float64)))
        opt.step()
        exp = {kk: v.numpy() for kk, v in model.state_dict().items()}
        got = outs[k]
        worst, worst_n, bad = 0.0, "-", []
        for n, p in params.items():
            key = "param." + n
            if key not in got:
                bad.append(f"{key} missing")
                continue
            st = opt.state[p]
            if opt_kind == "sgd":
                direction = float(np.abs(st["momentum_buffer"].numpy() if mom else p.grad.numpy()).max())
            else:
                direction = 1.0  # |m_hat / (sqrt(v_hat) + eps)| is about 1
            allowed = 1e-6 * float(np.abs(exp[n]).max()) + 1e-5 * lr * direction + 1e-30
            diff = float(np.abs(np.reshape(got[key], exp[n].shape).astype(np.float64) - exp[n]).max())
            if diff > allowed:
                bad.append(f"{n} max|diff| {diff:.2e} > {allowed:.2e}")
            if diff / allowed > worst:
                worst, worst_n = diff / allowed, n
            if VERBOSE:
                print(f"      {n:<44} max|diff| {diff:.2e}, allowed {allowed:.2e}")
        check(f"{what} replay step {k}: parameters", not bad,
              f"{len(params)} tensors, worst {worst_n} at {worst:.2f} of its allowance (float32 rounding)"
              + (f"; over: {', '.join(bad[:4])}" if bad else ""))
        bkeys = [kk for kk in exp if kk not in params]
        if bkeys:
            compare_group(f"{what} replay step {k}: buffers", ["param." + kk for kk in bkeys], got,
                          {"param." + kk: exp[kk] for kk in bkeys}, 1e-3, floor=1e-6)


def check_run(what, got, ref, ref32, zb, K, adam_lr=None):
    """The end-to-end checks of one K-step training run against float64 PyTorch (ref) and torch's own
    float32 result (ref32): logits 1e-4, losses 1e-5, gradients and parameters 1e-3 (or 3x torch float32's
    own error where that is larger)."""
    lg = got.get("logits")
    check(f"{what}: logits dtype/shape", lg is not None and lg.dtype == np.float32 and lg.shape == ref["logits"].shape,
          f"{None if lg is None else (lg.dtype, lg.shape)}")
    compare_group(f"{what}: logits", ["logits"], got, ref, 1e-4, ref32=ref32)
    compare_group(f"{what}: loss, loss.0..{K - 1}", ["loss"] + [f"loss.{k}" for k in range(K)], got, ref, 1e-5,
                  ref32=ref32)
    wmax = {k[len("grad."):-len(".weight")]: float(np.abs(v).max()) for k, v in ref.items()
            if k.startswith("grad.") and k.endswith(".weight")}

    def noise_grad(gv, layer):
        scale = max(wmax.get(layer, 0.0), 1e-30)
        m = float(np.abs(np.asarray(gv, np.float64)).max()) if np.size(gv) else 0.0
        return m <= 1e-3 * scale, m / scale, "zero in exact math: max|grad| / max|weight grad|"

    special = {f"grad.{b}": (lambda gv, rv, L=b[:-len(".bias")]: noise_grad(gv, L)) for b in zb}
    compare_group(f"{what}: gradients", [k for k in ref if k.startswith("grad.")], got, ref, 1e-3, ref32=ref32,
                  special=special)
    pkeys = [k for k in ref if k.startswith("param.")]
    if adam_lr is None:
        compare_group(f"{what}: params and buffers after {K} steps", pkeys, got, ref, 1e-3, floor=1e-6, ref32=ref32)
        return
    # Adam: the same float32 tolerance as SGD (1e-3, or 10x torch float32's own error where that is larger), except
    # for the biases whose exact gradient is zero (they feed a batchnorm).  Their gradient is rounding noise, and
    # Adam divides a gradient by its own running magnitude: noise of any size becomes a step of about lr in a
    # direction set by the rounding, so two correct float implementations can end apart by as much as both can
    # move in K steps, and no tighter bound can hold.  That bound, from the update itself: with g_1..g_t,
    # m_t = (1-b1) sum_i b1^(t-i) g_i and v_t = (1-b2) sum_i b2^(t-i) g_i^2, Cauchy-Schwarz gives
    # |m_t| / (1-b1^t) <= B_t sqrt(v_t / (1-b2^t)) with
    # B_t = (1-b1)/(1-b1^t) sqrt((1-b2^t)/(1-b2)) sqrt(sum_{j<t} (b1^2/b2)^j), so each step moves a parameter by
    # at most lr B_t (weight decay 0), and two runs differ by at most 2 lr sum_t B_t (6.01 lr for K = 3).
    b1, b2 = 0.9, 0.999
    bound = 2 * sum((1 - b1) / (1 - b1 ** t) * np.sqrt((1 - b2 ** t) / (1 - b2))
                    * np.sqrt(sum((b1 * b1 / b2) ** j for j in range(t))) for t in range(1, K + 1))
    lr = adam_lr

    def within_adam_bound(gv, rv):
        dd = float(np.abs(np.reshape(gv, rv.shape).astype(np.float64) - rv).max()) / lr
        return dd <= bound + 1e-6 * float(np.abs(rv).max()) / lr, dd, f"max|diff|/lr, bound 2 sum_t B_t = {bound:.2f}"

    zkeys = [k for k in pkeys if k[len("param."):] in zb]
    compare_group(f"{what}: params and buffers after {K} steps", [k for k in pkeys if k not in zkeys], got, ref, 1e-3,
                  floor=1e-6, ref32=ref32)
    if zkeys:
        compare_group(f"{what}: biases with a zero exact gradient after {K} steps, within {bound:.2f} lr", zkeys, got,
                      ref, bound, special={k: within_adam_bound for k in zkeys})


def part_b():
    print("== part (b): C engine (tests/tool_refstep.c) vs PyTorch")
    tool = os.environ.get("XBAR_REFSTEP", os.path.join(ROOT, "build", "tests", "tool_refstep"))
    if not (os.path.isfile(tool) and os.access(tool, os.X_OK)):
        check("tool_refstep exists", False, f"{tool} not found. HINT: make build/tests/tool_refstep (or set "
                                            f"XBAR_REFSTEP); the C-vs-PyTorch checks did not run")
        return
    K, N = 3, 8
    # (optimizer, lr, momentum, weight decay, label smoothing, extra tool flags)
    runs = [("sgd", 0.1, 0.9, 5e-4, 0.0, []), ("adam", 1e-3, 0.0, 0.0, 0.1, [])]
    # training's own conditions: two threads, and a batch smaller than the one the model was planned
    # for (every epoch's last batch: 80 of 128)
    train_like = ("sgd", 0.1, 0.9, 5e-4, 0.0, ["--threads", 2, "--plan-batch", N + 5])
    with tempfile.TemporaryDirectory(prefix="ref_torch-") as d:
        for name in ("resnet20", "vgg8", "mlp"):
            torch.manual_seed(0)
            twin = tz.build(name)
            w = os.path.join(d, f"{name}.safetensors")
            tz.save_weights(twin, w)
            init_state = copy.deepcopy(twin.state_dict())
            g = torch.Generator().manual_seed(1)
            x = torch.randn(N, 3, 32, 32, generator=g)
            y = torch.randint(0, 10, (N,), generator=g)
            xp, yp = os.path.join(d, f"{name}_x.npy"), os.path.join(d, f"{name}_y.npy")
            np.save(xp, x.numpy().astype(np.float32))
            np.save(yp, y.numpy().astype(np.int64))
            zb = zero_grad_biases(name)
            for opt, lr, mom, wd, ls, extra in runs + ([train_like] if name == "resnet20" else []):
                what = f"{name} {opt}" + (" (2 threads, batch 8 of 13)" if extra else "")
                tag = opt + ("_t2" if extra else "")
                outs = [None]
                for k in range(1, K + 1):
                    out = os.path.join(d, f"{name}_{tag}{k}.safetensors")
                    got = None
                    if run_tool(tool, ["--model", name, "--weights", w, "--input", xp, "--labels", yp, "--optimizer",
                                       opt, "--steps", k, "--lr", lr, "--momentum", mom, "--weight-decay", wd,
                                       "--label-smoothing", ls, "--out", out] + extra, f"{what} --steps {k}"):
                        try:
                            got = st_np.load(out)
                        except (OSError, st_np.SafetensorsError) as e:
                            check(f"{what} --steps {k}: output readable", False, str(e))
                    outs.append(got)
                if outs[K] is not None:
                    ref = reference(name, init_state, x, y, opt, K, lr, mom, wd, ls, torch.float64)
                    ref32 = reference(name, init_state, x, y, opt, K, lr, mom, wd, ls, torch.float32)
                    check_run(what, outs[K], ref, ref32, zb, K, adam_lr=lr if opt == "adam" else None)
                def grad_at(k):
                    """The tool's gradients at its state after k-1 steps."""
                    if k == 1:
                        return outs[1]
                    wk = os.path.join(d, f"{name}_{tag}{k - 1}_state.safetensors")
                    st_np.save(wk, {n[len("param."):]: v for n, v in outs[k - 1].items() if n.startswith("param.")})
                    out = os.path.join(d, f"{name}_{tag}{k - 1}_grad.safetensors")
                    if not run_tool(tool, ["--model", name, "--weights", wk, "--input", xp, "--labels", yp,
                                           "--optimizer", opt, "--steps", 1, "--lr", 0, "--momentum", mom,
                                           "--weight-decay", wd, "--label-smoothing", ls, "--out", out] + extra,
                                    f"{what} gradients after {k - 1} step(s)"):
                        return None
                    try:
                        return st_np.load(out)
                    except (OSError, st_np.SafetensorsError) as e:
                        check(f"{what}: output readable", False, str(e))
                        return None

                if all(o is not None for o in outs[1:]):  # every one of the K steps, from the tool's own state
                    replay(name, what, init_state, x, y, outs, grad_at, opt, lr, mom, wd, ls, zb)

        # eval mode with non-trivial running statistics
        name = "vgg8"
        torch.manual_seed(0)
        twin = tz.build(name)
        g = torch.Generator().manual_seed(5)
        with torch.no_grad():
            for k, v in twin.state_dict().items():
                if k.endswith("running_mean"):
                    v.copy_(0.3 * torch.randn(v.shape, generator=g))
                elif k.endswith("running_var"):
                    v.copy_(0.25 + 2 * torch.rand(v.shape, generator=g))
                elif k.endswith("num_batches_tracked"):
                    v.fill_(123)
        w = os.path.join(d, "vgg8_eval.safetensors")
        tz.save_weights(twin, w)
        x = torch.randn(N, 3, 32, 32, generator=g)
        xp = os.path.join(d, "vgg8_eval_x.npy")
        np.save(xp, x.numpy())
        out = os.path.join(d, "vgg8_eval_out.safetensors")
        if run_tool(tool, ["--model", name, "--weights", w, "--input", xp, "--eval", "--out", out], "vgg8 eval"):
            twin.eval()
            twin.double()
            with torch.no_grad():
                ref = {"logits": twin(x.double()).numpy()}
            try:
                compare_group("vgg8 eval: logits (BN running stats in use)", ["logits"], st_np.load(out), ref, 1e-4)
            except (OSError, st_np.SafetensorsError) as e:
                check("vgg8 eval: output readable", False, str(e))


def main():
    t0 = time.time()
    for part in (part_a, part_b):
        try:
            part()
        except Exception as e:  # a crash in one part is a failure, and the other part still runs
            import traceback
            traceback.print_exc()
            check(f"{part.__name__} completes", False, f"{type(e).__name__}: {e}")
    print(f"total {time.time() - t0:.1f}s")
    print(f"ref_torch: {N_PASS} passed, {N_FAIL} failed")
    return 1 if N_FAIL else 0


if __name__ == "__main__":
    sys.exit(main())
