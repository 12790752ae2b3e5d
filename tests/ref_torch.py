#!/usr/bin/env python3
"""ref_torch.py -- xbar against PyTorch (run by tests/run_all.sh with /usr/bin/python3: torch, numpy).

Part (a), the zoo configs: for every model in configs/models/, the hand-written PyTorch twin of
tools/torch_zoo.py (written as the reference repositories write it) and CfgNet, the generic interpreter
of the .cfg, have the same state_dict (names in order, shapes, dtypes) and, with the same weights, the
same outputs on a random batch in eval and in train mode (and the same BN running statistics after the
train-mode forward).  That proves the configs describe the reference models.  Also: the configs are
what tools/gen_zoo.py writes, and tools/st_np.py round-trips every dtype.

Part (b), the C engine: drives tests/tool_refstep.c (binary $XBAR_REFSTEP, default
build/tests/tool_refstep; a missing binary is a failure, not a skip):

    tool_refstep --model NAME --weights W.safetensors --input X.npy --labels Y.npy --optimizer sgd|adam
                 --steps K --lr LR --momentum M --weight-decay WD --label-smoothing E --out OUT.safetensors

In train mode step k = 0..K-1 is forward + backward + update on the same batch; OUT holds "logits" and
"loss" of the first forward, "grad.<param>" of the first backward, "loss.<k>" of every step and
"param.<name>" of every parameter and buffer after the K updates (so the BN buffers have seen K
batches).  The PyTorch reference does the same with torch.optim.SGD / Adam over model.parameters() in
one group (weight decay on every parameter) and F.cross_entropy(label_smoothing=E).  For resnet20,
vgg8 and mlp (batch 8, N(0,1) inputs) it checks: logits (max|diff|/max|ref| <= 1e-4), loss (1e-5),
every gradient (1e-3), every parameter and buffer after 3 SGD steps (lr 0.1, momentum 0.9, wd 5e-4)
and after 3 Adam steps (lr 1e-3, label smoothing 0.1) (1e-3, max|diff| / max(max|ref|, 1e-6)), and
num_batches_tracked exactly.  One eval-mode check (--eval: logits only) runs vgg8 with non-trivial BN
running statistics.

Biases of conv/linear layers that feed a batchnorm have a gradient that is exactly zero in exact
arithmetic (train-mode BN subtracts the batch mean), so both sides hold rounding noise there.  Those
gradients are checked to be tiny against the layer's weight gradient, and after Adam (which turns noise
into +-lr steps) the bias is checked to within 2*K*lr instead of relatively.

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


def reference(model, x, y, opt, steps, lr, mom, wd, ls):
    model.train()
    if opt == "sgd":
        o = torch.optim.SGD(model.parameters(), lr=lr, momentum=mom, weight_decay=wd)
    else:
        o = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd)
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


def compare_group(what, keys, got, ref, tol, floor=1e-30, special=None):
    """One check over a group of tensors: each must be within tol; prints the worst and every failure."""
    missing = [k for k in keys if k not in got]
    if missing:
        return check(what, False, f"missing from tool output: {', '.join(missing[:5])}"
                                  f"{' ...' if len(missing) > 5 else ''} ({len(missing)} of {len(keys)})")
    worst, worst_k, bad = -1.0, None, []
    for k in keys:
        g, r = got[k], ref[k]
        if special and k in special:
            ok, e, note = special[k](g, r)
        elif np.shape(g) != np.shape(r) and not (np.size(g) == np.size(r) == 1):
            ok, e, note = False, float("inf"), f"shape {np.shape(g)} != {np.shape(r)}"
        elif r.dtype == np.int64:
            ok = np.issubdtype(g.dtype, np.integer) and np.array_equal(np.reshape(g, r.shape), r)
            e, note = (0.0 if ok else float("inf")), f"{g.dtype} {np.ravel(g)[:3]} vs {np.ravel(r)[:3]}"
        else:
            e = rel_err(np.reshape(g, r.shape), r, floor)
            ok, note = e <= tol, ""
        if VERBOSE or not ok:
            print(f"      {k:<44} rel err {e:.2e}{'  ' + note if note else ''}{'' if ok else '  <-- FAIL'}")
        if not ok:
            bad.append(k)
        if e > worst:
            worst, worst_k = e, k
    return check(what, not bad, f"{len(keys)} tensors, worst {worst_k} {worst:.1e} (tol {tol:g})"
                 + (f"; {len(bad)} over: {', '.join(bad[:4])}" if bad else ""))


def part_b():
    print("== part (b): C engine (tests/tool_refstep.c) vs PyTorch")
    tool = os.environ.get("XBAR_REFSTEP", os.path.join(ROOT, "build", "tests", "tool_refstep"))
    if not (os.path.isfile(tool) and os.access(tool, os.X_OK)):
        check("tool_refstep exists", False, f"{tool} not found. HINT: make build/tests/tool_refstep (or set "
                                            f"XBAR_REFSTEP); the C-vs-PyTorch checks did not run")
        return
    K, N = 3, 8
    runs = [("sgd", 0.1, 0.9, 5e-4, 0.0), ("adam", 1e-3, 0.0, 0.0, 0.1)]
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
            for opt, lr, mom, wd, ls in runs:
                what = f"{name} {opt}"
                out = os.path.join(d, f"{name}_{opt}_out.safetensors")
                if not run_tool(tool, ["--model", name, "--weights", w, "--input", xp, "--labels", yp,
                                       "--optimizer", opt, "--steps", K, "--lr", lr, "--momentum", mom,
                                       "--weight-decay", wd, "--label-smoothing", ls, "--out", out], what):
                    continue
                model = tz.build(name)
                model.load_state_dict(init_state)
                ref = reference(model, x, y, opt, K, lr, mom, wd, ls)
                try:
                    got = st_np.load(out)
                except (OSError, st_np.SafetensorsError) as e:
                    check(f"{what}: output readable", False, str(e))
                    continue
                lg = got.get("logits")
                check(f"{what}: logits dtype/shape", lg is not None and lg.dtype == np.float32 and
                      lg.shape == ref["logits"].shape, f"{None if lg is None else (lg.dtype, lg.shape)}")
                compare_group(f"{what}: logits", ["logits"], got, ref, 1e-4)
                compare_group(f"{what}: loss, loss.0..{K - 1}", ["loss"] + [f"loss.{k}" for k in range(K)],
                              got, ref, 1e-5)
                wmax = {k[5:-5]: float(np.abs(v).max()) for k, v in ref.items()
                        if k.startswith("grad.") and k.endswith(".weight")}

                def noise_grad(gv, rv, layer=None):
                    lim = 1e-3 * max(wmax.get(layer, 0.0), 1e-12)
                    m = float(np.abs(np.asarray(gv, np.float64)).max()) if np.size(gv) else 0.0
                    return m <= lim, m / max(wmax.get(layer, 0.0), 1e-30), "zero in exact math; |grad| vs weight grad"

                special = {f"grad.{b}": (lambda gv, rv, L=b[:-5]: noise_grad(gv, rv, L)) for b in zb}
                gkeys = [k for k in ref if k.startswith("grad.")]
                compare_group(f"{what}: gradients", gkeys, got, ref, 1e-3, special=special)
                pspecial = {}
                if opt == "adam":
                    def adam_noise(gv, rv):
                        dmax = float(np.abs(np.reshape(gv, rv.shape).astype(np.float64) - rv).max())
                        return dmax <= 2 * K * lr * 1.001, dmax / (2 * K * lr), "Adam on noise: |diff| vs 2*K*lr"
                    pspecial = {f"param.{b}": adam_noise for b in zb}
                pkeys = [k for k in ref if k.startswith("param.")]
                compare_group(f"{what}: params and buffers after {K} steps", pkeys, got, ref, 1e-3, floor=1e-6,
                              special=pspecial)

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
            with torch.no_grad():
                ref = {"logits": twin(x).numpy()}
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
