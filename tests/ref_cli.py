#!/usr/bin/env python3
"""ref_cli.py -- the `xbar` command as a user meets it (run by tests/run_all.sh with /usr/bin/python3).

1. Every error a user can cause (bad flags, bad configs, missing/corrupt/truncated/foreign weights,
   bad arrays, missing or corrupt data, a weights file given as a checkpoint) ends with a non-zero
   exit, never a signal, and a message that names the file or flag and, for files, gives a HINT.
2. End to end: weights exported from the PyTorch twin (tools/torch_zoo.py) load unchanged and
   `xbar infer` gives PyTorch's eval-mode logits (max relative error <= 1e-4); `info`/`eval --json`
   print valid JSON; a tiny `train` run writes weights and a checkpoint, and `--resume` continues it.
3. scripts/jpeg_quality.py finds the quality and the colour subsampling of JPEG-quantised images, and
   no JPEG lattice in images that never were.

Binary: $XBAR_BIN (default build/xbar).  Data: $XBAR_DATA or ../shared/data/cifar10 (the data-dependent
checks are reported as failures if it is missing: CI always has it).
Prints one line per check and ends with "ref_cli: N passed, M failed".
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import st_np  # noqa: E402
import torch_zoo  # noqa: E402

XBAR = os.environ.get("XBAR_BIN", os.path.join(ROOT, "build", "xbar"))
DATA = os.environ.get("XBAR_DATA", os.path.join(ROOT, "..", "shared", "data", "cifar10"))
N_PASS = N_FAIL = 0


def check(name, ok, detail=""):
    global N_PASS, N_FAIL
    N_PASS += bool(ok)
    N_FAIL += not ok
    print(f"{'PASS' if ok else 'FAIL'}  {name}{': ' + detail if detail else ''}", flush=True)
    return ok


def xbar(*args, timeout=600):
    r = subprocess.run([XBAR] + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout, env=dict(os.environ, OMP_NUM_THREADS="2"))
    return r.returncode, r.stdout, r.stderr


def expect_error(name, args, needles, code=None):
    """The command must fail cleanly (exit 1 or 2, not a signal) and its stderr contain every needle."""
    rc, out, err = xbar(*args)
    msg = err.strip().splitlines()[-1] if err.strip() else ""
    bad = [n for n in needles if n not in err]
    crashed = rc < 0 or rc > 2 or "AddressSanitizer" in err or "internal error" in err
    ok = rc != 0 and not crashed and not bad and (code is None or rc == code)
    check(f"error: {name}", ok, f"exit {rc}, '{msg[:150]}'" + (f"; missing {bad}" if bad else ""))


def main():
    if not os.access(XBAR, os.X_OK):
        check("xbar binary exists", False, f"{XBAR} not found: run make")
        print(f"ref_cli: {N_PASS} passed, {N_FAIL} failed")
        return 1
    have_data = os.path.isfile(os.path.join(DATA, "test_batch.bin"))
    d = tempfile.mkdtemp(prefix="ref_cli-")
    try:
        # ---- usage errors (exit 2) ------------------------------------------------------------
        expect_error("no command", [], ["usage"], code=2)
        expect_error("unknown command", ["frobnicate"], ["frobnicate", "xbar help"], code=2)
        expect_error("unknown flag", ["train", "--epoch", "3"], ["--epoch", "--help"], code=2)
        expect_error("out of range", ["train", "--epochs", "0"], ["--epochs", "range"], code=2)
        expect_error("not a number", ["train", "--lr", "fast"], ["--lr", "fast"], code=2)
        expect_error("bad choice", ["train", "--optimizer", "lion"], ["lion", "sgd|adam|adamw"], code=2)
        expect_error("missing required", ["eval", "--model", "resnet20"], ["--weights", "required"], code=2)
        rc, out, err = xbar("train", "--help")
        check("train --help lists flags with defaults and ranges", rc == 0 and "--schedule" in out and
              "default 128" in out and "range" in out)

        # ---- configs --------------------------------------------------------------------------
        expect_error("unknown zoo model", ["info", "--model", "resnet21"], ["resnet21", "resnet20", "HINT"])
        bad = os.path.join(d, "bad.cfg")
        with open(bad, "w") as f:
            f.write("[net]\ninput = 3x32x32\nclasses = 10\n[conv2d c]\nout_channels = 8\nkernel = 3\nstide = 2\n"
                    "[gap g]\n[linear fc]\nout_features = 10\n")
        expect_error("unknown key in a .cfg", ["info", "--model", bad], ["bad.cfg:7", "stide"])
        expect_error("missing .cfg", ["info", "--model", os.path.join(d, "none.cfg")], ["none.cfg"])

        # ---- weights --------------------------------------------------------------------------
        torch.manual_seed(0)
        twin = torch_zoo.build("resnet20")
        for m in twin.modules():  # non-trivial running statistics, so eval mode is really tested
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
        w = os.path.join(d, "r20.safetensors")
        torch_zoo.save_weights(twin, w)
        raw = open(w, "rb").read()
        trunc = os.path.join(d, "trunc.safetensors")
        open(trunc, "wb").write(raw[: len(raw) // 2])
        corrupt = os.path.join(d, "corrupt.safetensors")
        open(corrupt, "wb").write(raw[:8] + b"{not json" + raw[17:])
        x = np.random.default_rng(0).standard_normal((5, 3, 32, 32)).astype(np.float32)
        xp = os.path.join(d, "x.npy")
        np.save(xp, x)
        yp = os.path.join(d, "y.npy")
        for name, path, needles in [("truncated weights", trunc, ["trunc.safetensors"]),
                                    ("corrupt weights", corrupt, ["corrupt.safetensors"]),
                                    ("missing weights", os.path.join(d, "none.safetensors"), ["none.safetensors"])]:
            expect_error(name, ["infer", "--model", "resnet20", "--weights", path, "--input", xp, "--out", yp], needles)
        lenet = os.path.join(d, "lenet.safetensors")
        torch_zoo.save_weights(torch_zoo.build("lenet5"), lenet)
        expect_error("weights of another model", ["infer", "--model", "resnet20", "--weights", lenet, "--input", xp,
                                                  "--out", yp], ["lenet.safetensors", "HINT"])
        sd = st_np.load(w)
        sd["layer2.0.conv1.weight"] = sd["layer2.0.conv1.weight"][:, :8]
        wrong = os.path.join(d, "wrongshape.safetensors")
        st_np.save(wrong, sd)
        expect_error("a tensor of the wrong shape", ["infer", "--model", "resnet20", "--weights", wrong, "--input", xp,
                                                     "--out", yp], ["wrongshape.safetensors", "layer2.0.conv1.weight"])

        # ---- arrays ----------------------------------------------------------------------------
        np.save(os.path.join(d, "x64.npy"), x.astype(np.float64))
        expect_error("float64 input", ["infer", "--model", "resnet20", "--weights", w, "--input",
                                       os.path.join(d, "x64.npy"), "--out", yp], ["x64.npy", "float32"])
        np.save(os.path.join(d, "xs.npy"), x[:, :, :16])
        expect_error("wrong image size", ["infer", "--model", "resnet20", "--weights", w, "--input",
                                          os.path.join(d, "xs.npy"), "--out", yp], ["xs.npy", "32"])
        rawx = open(xp, "rb").read()
        open(os.path.join(d, "xt.npy"), "wb").write(rawx[:-100])
        expect_error("truncated .npy", ["infer", "--model", "resnet20", "--weights", w, "--input",
                                        os.path.join(d, "xt.npy"), "--out", yp], ["xt.npy"])

        # ---- end to end: PyTorch weights -> xbar infer == PyTorch eval -------------------------
        rc, out, err = xbar("infer", "--model", "resnet20", "--weights", w, "--input", xp, "--out", yp)
        if check("infer with PyTorch-exported weights runs", rc == 0, err.strip()[-200:]):
            got = np.load(yp)
            twin.eval()
            with torch.no_grad():
                ref = twin(torch.from_numpy(x)).numpy()
            e = float(np.max(np.abs(got - ref)) / np.max(np.abs(ref)))
            check("infer logits == PyTorch eval logits", got.shape == ref.shape and e <= 1e-4,
                  f"shape {got.shape}, max rel err {e:.2e}")
        rc, out, err = xbar("info", "--model", "resnet20", "--json")
        try:
            j = json.loads(out)
            check("info --json", rc == 0 and j["params"] == 269722 and len(j["layers"]) > 20, f"{j['params']} params")
        except (ValueError, KeyError) as ex:
            check("info --json", False, str(ex))

        # ---- data ------------------------------------------------------------------------------
        expect_error("no CIFAR directory", ["train", "--data", os.path.join(d, "nodata"), "--steps", "1"],
                     ["nodata", "CIFAR-10"])
        if not check("CIFAR-10 present for the data checks", have_data, DATA):
            return 1
        bad_data = os.path.join(d, "badcifar")
        os.makedirs(bad_data)
        for fn in os.listdir(DATA):
            if fn.endswith(".bin"):
                os.symlink(os.path.join(os.path.abspath(DATA), fn), os.path.join(bad_data, fn))
        os.remove(os.path.join(bad_data, "test_batch.bin"))
        tb = open(os.path.join(DATA, "test_batch.bin"), "rb").read()
        open(os.path.join(bad_data, "test_batch.bin"), "wb").write(tb[:-1000])
        expect_error("truncated CIFAR file", ["eval", "--model", "resnet20", "--weights", w, "--data", bad_data],
                     ["test_batch.bin"])
        rc, out, err = xbar("eval", "--model", "resnet20", "--weights", w, "--data", DATA, "--limit", "256", "--json",
                            "--quiet")
        try:
            j = json.loads(out)
            check("eval --json", rc == 0 and j["images"] == 256 and 0 <= j["accuracy"] <= 1, out.strip()[:120])
        except ValueError as ex:
            check("eval --json", False, f"{ex}: {out[:200]} {err[-200:]}")
        run = os.path.join(d, "run")
        rc, out, err = xbar("train", "--model", "lenet5", "--data", DATA, "--train-limit", "512", "--batch", "64",
                            "--epochs", "2", "--steps", "5", "--out", run, "--json", "--quiet")
        ck = os.path.join(run, "checkpoint.safetensors")
        check("train --steps writes weights and a checkpoint", rc == 0 and os.path.isfile(ck) and
              os.path.isfile(os.path.join(run, "weights.safetensors")), err.strip()[-200:])
        rc, out, err = xbar("train", "--model", "lenet5", "--data", DATA, "--train-limit", "512", "--batch", "64",
                            "--epochs", "2", "--out", run, "--json", "--quiet", "--resume", ck, "--eval-limit", "256")
        lines = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
        check("train --resume finishes the run", rc == 0 and lines and lines[-1]["steps"] == 16 and
              lines[-1]["epochs"] == 2 and lines[-1]["run_epochs"] == 2 and
              lines[-1]["seconds"] > lines[-1]["run_seconds"], out.strip()[-200:] + err.strip()[-200:])
        check("train's result gives the throughput with and without the first two steps",
              rc == 0 and lines and lines[-1]["train_images_per_s"] > 0 and lines[-1]["steady_images_per_s"] > 0,
              out.strip()[-300:])
        # the log feeds scripts/plot_training.py: the docs' markdown table and the SVG figure
        log = os.path.join(run, "log.jsonl")
        open(log, "w").write(out)
        plot = [sys.executable, os.path.join(ROOT, "scripts", "plot_training.py")]
        svg = os.path.join(run, "training.svg")
        r = subprocess.run(plot + ["--markdown", log, svg], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ep2 = [l for l in lines if l.get("epoch") == 2]
        row = f"| 2 | {ep2[0]['train_loss']:.4f} | {100 * ep2[0]['train_acc']:.2f}% |" if ep2 else "no epoch 2"
        drawn = os.path.isfile(svg) and open(svg).read().startswith("<svg")
        check("plot_training.py --markdown tables the log and draws it", r.returncode == 0 and row in r.stdout and
              "best: epoch" in r.stdout and drawn, r.stdout.strip()[-200:] + r.stderr.strip()[-200:])
        empty = os.path.join(run, "empty.jsonl")
        open(empty, "w").write("not a log\n")
        r = subprocess.run(plot + [empty], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        check("plot_training.py on a log without epochs fails naming it", r.returncode != 0 and "empty.jsonl" in
              r.stderr, r.stderr.strip()[-200:])
        nested = os.path.join(d, "new", "runs", "demo/")
        rc, out, err = xbar("train", "--model", "lenet5", "--data", DATA, "--train-limit", "128", "--batch", "64",
                            "--steps", "1", "--out", nested, "--quiet")
        check("train --out creates missing parents (mkdir -p)",
              rc == 0 and os.path.isfile(os.path.join(nested, "weights.safetensors")), err.strip()[-200:])
        blocker = os.path.join(d, "afile")
        open(blocker, "w").write("x")
        expect_error("train --out through a file", ["train", "--model", "lenet5", "--data", DATA, "--steps", "1",
                                                    "--out", os.path.join(blocker, "run")],
                     ["afile/run", "afile is not a directory", "HINT"])
        expect_error("weights given as a checkpoint", ["train", "--model", "lenet5", "--data", DATA, "--train-limit",
                                                        "512", "--batch", "64", "--epochs", "2", "--out", run,
                                                        "--resume", os.path.join(run, "weights.safetensors")],
                     ["weights.safetensors", "checkpoint"])
        expect_error("train --weights with --resume", ["train", "--model", "lenet5", "--data", DATA, "--weights", lenet,
                                                         "--resume", ck, "--out", run], ["--weights", "--resume", "HINT"],
                     code=2)
        expect_error("train --weights of another model", ["train", "--model", "resnet20", "--data", DATA, "--weights",
                                                            lenet, "--steps", "1", "--out", run],
                     ["lenet.safetensors", "HINT"])
        expect_error("train --weights missing", ["train", "--model", "lenet5", "--data", DATA, "--weights",
                                                 os.path.join(d, "none.safetensors"), "--steps", "1", "--out", run],
                     ["none.safetensors"])
        expect_error("resume with another batch size", ["train", "--model", "lenet5", "--data", DATA, "--train-limit",
                                                         "512", "--batch", "32", "--epochs", "2", "--out", run,
                                                         "--resume", ck], ["--batch"])
        expect_error("resume with another --cutout", ["train", "--model", "lenet5", "--data", DATA, "--train-limit",
                                                       "512", "--batch", "64", "--epochs", "2", "--out", run,
                                                       "--cutout", "8", "--resume", ck],
                     ["checkpoint.safetensors", "--cutout 0", "--cutout 8", "HINT"])
        # SWA: the average's reported accuracy is what `xbar eval` gives its weights file
        srun = os.path.join(d, "swa")
        common = ["train", "--model", "resnet20", "--data", DATA, "--train-limit", "256", "--batch", "64", "--epochs",
                  "1", "--eval-limit", "256", "--out", srun, "--quiet", "--swa-lr", "0.02"]
        rc, out, err = xbar(*common, "--swa-epochs", "2", "--steps", "6", "--json")
        rc2, out2, err2 = xbar(*common, "--swa-epochs", "2", "--json", "--resume",
                               os.path.join(srun, "checkpoint.safetensors"))
        first = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
        lines = [json.loads(l) for l in out2.splitlines() if l.startswith("{")]
        res = lines[-1] if lines else {}
        sw = os.path.join(srun, "swa-weights.safetensors")
        # epochs 1 and (half of) 2, then the rest of 2 and 3: the SWA epochs 2 and 3 each report the average
        has = lambda ls: [l.get("swa_test_acc") is not None for l in ls[:-1]]  # noqa: E731
        ok = (rc == 0 and rc2 == 0 and res.get("swa_snapshots") == 2 and res.get("swa_weights") == sw and
              os.path.isfile(sw) and has(first) == [False, False] and has(lines) == [True, True])
        if check("train --swa-epochs, interrupted and resumed, reports and writes the SWA weights", ok,
                 (out2 + err + err2).strip()[-300:]):
            rc, out, err = xbar("eval", "--model", "resnet20", "--weights", sw, "--data", DATA, "--limit", "256",
                                "--json", "--quiet")
            acc = json.loads(out)["accuracy"] if rc == 0 else None
            check("xbar eval of swa-weights.safetensors gives the SWA accuracy train reported",
                  acc is not None and abs(acc - res["swa_test_acc"]) < 1e-6, f"{acc} vs {res['swa_test_acc']}")
        slog = os.path.join(srun, "log.jsonl")
        open(slog, "w").write(out + out2)
        r = subprocess.run(plot + ["--markdown", slog, os.path.join(srun, "t.svg")], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        check("plot_training.py tables and draws the SWA accuracy", r.returncode == 0 and "SWA test acc |" in r.stdout
              and f"SWA: epoch 3, {100 * res.get('swa_test_acc', -1):.2f}%" in r.stdout and "SWA test accuracy" in
              open(os.path.join(srun, "t.svg")).read(), r.stdout.strip()[-300:] + r.stderr.strip()[-200:])
        expect_error("resume inside the SWA epochs with another --swa-lr",
                     common[:-1] + ["0.05", "--swa-epochs", "2", "--resume",
                                    os.path.join(srun, "checkpoint.safetensors")],
                     ["checkpoint.safetensors", "--swa-lr", "HINT"])
        r = subprocess.run([XBAR, "version"], stdout=subprocess.PIPE, text=True)
        check("xbar version names the convolution kernels of the build", r.returncode == 0 and any(
            f"(convolution kernels: {k})" in r.stdout for k in ("avx512", "avx2", "cblas")), r.stdout.strip())
        check_energy(d, w)
        check_neat(d, w)
        check_jpeg_quality(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return 0


def check_energy(d, w):
    """`xbar energy` as a user meets it: its errors, JSON whose components sum to each layer and the layers to
    the total, the CSV, counts from images that agree with `xbar eval --energy` on the same images and seed."""
    hw = os.path.join(d, "en.cfg")
    base = ("[tile]\nrows = 64\ncols = 64\n[mapping]\nweight_bits = 4\nbits_per_cell = 2\n[input]\ndac_bits = 1\n"
            "bit_serial = true\ninput_bits = 4\n[output]\nadc_bits = 6\n[circuit]\nr_wire_ohm = 2\n"
            "r_driver_ohm = 500\nr_sense_ohm = 500\nsolver = exact\n")
    open(hw, "w").write(base + "[arch]\nadc_share_cols = 16\nzero_skip = true\n")
    bad = os.path.join(d, "en-bad.cfg")
    open(bad, "w").write(base + "[energy]\nadc_energy_j = -1\n")
    expect_error("[energy] value out of range", ["energy", "--model", "resnet20", "--hw", bad], ["en-bad.cfg:", "adc_energy_j"])
    open(bad, "w").write(base + "[energy]\nadc_energy_pj = 1\n")
    expect_error("unknown [energy] key", ["energy", "--model", "resnet20", "--hw", bad], ["en-bad.cfg:", "adc_energy_pj"])
    expect_error("energy --limit without --data", ["energy", "--model", "resnet20", "--hw", hw, "--limit", "4"],
                 ["--limit", "--data", "HINT"], code=2)
    expect_error("eval --energy without --hw", ["eval", "--model", "resnet20", "--weights", w, "--energy", "1"],
                 ["--energy", "--hw"], code=2)
    expect_error("energy --pe without --data", ["energy", "--model", "resnet20", "--pe"], ["--pe", "--data", "HINT"],
                 code=2)
    expect_error("energy without --hw", ["energy", "--model", "resnet20"], ["--hw", "HINT"], code=2)
    csv = os.path.join(d, "en.csv")
    rc, out, err = xbar("energy", "--model", "resnet20", "--weights", w, "--hw", hw, "--json", "--csv", csv)
    if not check("energy --json runs", rc == 0, err.strip()[-200:]):
        return
    r = json.loads(out)
    comp = ["array", "dac", "adc", "sense", "shift_add", "accumulate", "buffer", "digital"]
    worst = max(abs(sum(L[c + "_energy_j"] for c in comp) - L["energy_j"]) / max(L["energy_j"], 1e-30)
                for L in r["layers"])
    tot = sum(L["energy_j"] for L in r["layers"])
    check("energy: every layer's components sum to its energy_j, the layers to total_energy_j",
          worst < 1e-6 and abs(tot - r["total_energy_j"]) < 1e-6 * r["total_energy_j"] and
          r["latency_s"] > 0 and r["area_m2"] > 0 and r["tops_per_w"] > 0, f"worst {worst:.2e}")
    rc, out2, err = xbar("energy", "--model", "resnet20", "--weights", w, "--hw", hw, "--json", "--twin", "resnet20")
    if check("energy --twin runs", rc == 0, err.strip()[-200:]):
        t = json.loads(out2)
        check("energy --twin: both reports, and the ratio of their energies", abs(
            t["twin_energy_ratio"] - t["twin"]["total_energy_j"] / t["report"]["total_energy_j"]) < 1e-6 and
            abs(t["report"]["total_energy_j"] - r["total_energy_j"]) < 1e-9 * r["total_energy_j"],
            f"ratio {t['twin_energy_ratio']}")
    expect_error("energy --twin-weights without --twin", ["energy", "--model", "resnet20", "--hw", hw, "--twin-weights",
                                                           w], ["--twin", "HINT"], code=2)
    rows = open(csv).read().splitlines()
    check("energy --csv: a header and one line per layer", len(rows) == len(r["layers"]) + 1 and
          rows[0].startswith("name,kind,energy_j"), f"{len(rows)} lines for {len(r['layers'])} layers")
    if not os.path.isfile(os.path.join(DATA, "test_batch.bin")):
        return
    rc, out, err = xbar("energy", "--model", "resnet20", "--weights", w, "--hw", hw, "--json", "--quiet", "--data",
                        DATA, "--limit", "24", "--batch", "8")
    rc2, out2, err2 = xbar("eval", "--model", "resnet20", "--weights", w, "--hw", hw, "--json", "--quiet", "--data",
                           DATA, "--limit", "24", "--batch", "8", "--energy", "1", "--seeds", "1", "--no-software")
    if check("energy --data and eval --energy run", rc == 0 and rc2 == 0, (err + err2).strip()[-300:]):
        a, b = json.loads(out), json.loads(out2)["energy"]
        skipped = sum(L.get("counts", {}).get("reads_skipped", 0) for L in a["layers"])
        check("energy --data: counted from 24 images, zero planes skipped", a["measured"] and a["images"] == 24 and
              skipped > 0, f"skipped reads per image {skipped}")
        check("eval --energy counts what energy --data counts on the same images and seed",
              abs(a["total_energy_j"] - b["total_energy_j"]) <= 1e-9 * a["total_energy_j"],
              f"{a['total_energy_j']} vs {b['total_energy_j']}")
    rc, out, err = xbar("energy", "--model", "resnet20", "--weights", w, "--pe", "--json", "--quiet", "--data", DATA,
                        "--limit", "16")
    if check("energy --pe runs", rc == 0, err.strip()[-300:]):
        r = json.loads(out)
        check("energy --pe: skipping zeros takes fewer cycles and less energy than the dense baseline", 0 < r["density"] < 1
              and 0 < r["latency_s"] < r["dense"]["latency_s"] and 0 < r["total_energy_j"] < r["dense"]["energy_j"] and
              len(r["layers"]) == 20, f"density {r['density']}, {r['latency_s']} s vs {r['dense']['latency_s']} s")


def check_neat(d, w):
    """`xbar neat` and `xbar train --neat-hw` (docs/neat.md) as a user meets them: the preset's cut-offs are NEAT's,
    one-shot clipping puts every weight in the linear range as evaluated, the heterogeneous config loads and
    gives each layer its voltage, clip-and-retrain keeps the weights inside their cut-offs, and the errors."""
    preset = os.path.join(ROOT, "configs", "hw", "neat-1t1r-64.cfg")
    lin = os.path.join(ROOT, "configs", "hw", "neat-64.cfg")
    expect_error("neat on resistor cells", ["neat", "--model", "resnet20", "--hw", lin], ["type = 1t1r", "HINT"])
    expect_error("neat --v-gates not a list", ["neat", "--model", "resnet20", "--hw", preset, "--v-gates", "0.8,x"],
                 ["--v-gates", "HINT"], code=2)
    expect_error("neat --v-gates below threshold", ["neat", "--model", "resnet20", "--hw", preset, "--v-gates", "0.3"],
                 ["0.3", "threshold", "HINT"])
    expect_error("train --neat-every without --neat-hw", ["train", "--model", "lenet5", "--neat-every", "5"],
                 ["--neat-hw"])
    bad = os.path.join(d, "neat-bad.cfg")
    open(bad, "w").write("[cell]\ntype = 1t1r\n")
    expect_error("1t1r with analog inputs", ["energy", "--model", "resnet20", "--hw", bad], ["neat-bad.cfg", "dac_bits = 1"])
    rc, out, err = xbar("neat", "--model", "resnet20", "--weights", w, "--hw", preset, "--v-gates", "0.8,1.0,1.3", "--json")
    if not check("neat --json runs", rc == 0, err.strip()[-200:]):
        return
    j = json.loads(out)
    gc = {e["v_gate_v"]: e for e in j["g_cut"]}
    check("the preset's cut-offs are NEAT's (1.25e-5 S at 0.8 V; the range linear at 1.0 and 1.3 V)",
          abs(gc[0.8]["g_cut_s"] / 1.25e-5 - 1) < 1e-3 and gc[1.0]["no_cut"] and gc[1.3]["no_cut"],
          f"{gc[0.8]['g_cut_s']:.4g} S")
    vg = os.path.join(d, "neat-vg08.cfg")
    open(vg, "w").write(open(preset).read().replace("v_gate_v = 1.0", "v_gate_v = 0.8"))
    clip = os.path.join(d, "neat-clip")
    rc, out, err = xbar("neat", "--model", "resnet20", "--weights", w, "--hw", vg, "--clip-out", clip)
    ok = rc == 0 and os.path.isfile(os.path.join(clip, "weights.safetensors")) and os.path.isfile(os.path.join(clip, "wct.json"))
    if check("neat --clip-out writes the clipped weights and their mapping scales", ok, err.strip()[-200:]):
        rc, out, err = xbar("neat", "--model", "resnet20", "--weights", os.path.join(clip, "weights.safetensors"), "--hw",
                            vg, "--w-scales", os.path.join(clip, "wct.json"), "--json")
        ls = json.loads(out)["layers"] if rc == 0 else []
        check("after the clip every weight is in the linear range (mapped with the pre-clip scales)",
              ls and all(l["linear_share"] == 1 for l in ls), err.strip()[-200:])
        expect_error("neat --clip-out with --w-scales", ["neat", "--model", "resnet20", "--weights", w, "--hw", vg,
                                                         "--clip-out", clip, "--w-scales", os.path.join(clip, "wct.json")],
                     ["--clip-out", "--w-scales"])
    het = os.path.join(d, "neat-het.cfg")
    rc, out, err = xbar("neat", "--model", "resnet20", "--weights", w, "--hw", preset, "--write-hw", het, "--json",
                        "--v-gates", "0.7,0.8,0.9,1.0")
    want = {l["layer"]: l["v_gate_hetero"] for l in json.loads(out)["layers"]} if rc == 0 else {}
    rc2, out2, err2 = xbar("neat", "--model", "resnet20", "--weights", w, "--hw", het, "--json")
    got = {l["layer"]: l["v_gate_v"] for l in json.loads(out2)["layers"]} if rc2 == 0 else {}
    check("neat --write-hw: the config loads and gives each layer its heterogeneous gate voltage",
          rc == 0 and rc2 == 0 and want and got == want and len(set(want.values())) > 1,
          f"{sorted(set(want.values()))}" + err.strip()[-100:] + err2.strip()[-100:])
    if not os.path.isfile(os.path.join(DATA, "test_batch.bin")):
        return
    rc, out, err = xbar("eval", "--model", "resnet20", "--weights", os.path.join(clip, "weights.safetensors"), "--hw",
                        vg, "--w-scales", os.path.join(clip, "wct.json"), "--data", DATA, "--limit", "64", "--seeds", "1",
                        "--energy", "0", "--json", "--quiet")
    check("eval of the clipped weights on the 1T-1R preset with --w-scales", rc == 0, err.strip()[-200:])
    tr = os.path.join(d, "neat-train")
    rc, out, err = xbar("train", "--model", "resnet20", "--weights", w, "--data", DATA, "--train-limit", "128",
                        "--batch", "64", "--epochs", "1", "--optimizer", "adam", "--lr", "1e-3", "--neat-hw", vg,
                        "--eval-limit", "64", "--out", tr, "--json", "--quiet")
    if check("train --neat-hw runs", rc == 0 and os.path.isfile(os.path.join(tr, "wct.json")), err.strip()[-200:]):
        rc, out, err = xbar("neat", "--model", "resnet20", "--weights", os.path.join(tr, "weights.safetensors"), "--hw",
                            vg, "--w-scales", os.path.join(tr, "wct.json"), "--json")
        ls = json.loads(out)["layers"] if rc == 0 else []
        check("clip-and-retrain (clip every step) leaves every weight inside its cut-off",
              ls and all(l["linear_share"] == 1 for l in ls), err.strip()[-200:])


def check_jpeg_quality(d):
    """scripts/jpeg_quality.py finds the quality of images quantised as JPEG does (YCbCr, 8x8 DCT,
    libjpeg's scaled table), and no lattice in images that never were."""
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    import jpeg_quality as jq
    rng = np.random.default_rng(5)
    noise = rng.normal(size=(300, 3, 40, 40))
    k = np.ones(9) / 9  # smooth fields, like downscaled photographs
    for ax in (2, 3):
        noise = np.apply_along_axis(lambda v: np.convolve(v, k, mode="valid"), ax, noise)
    x = np.clip(128 + 60 * noise / noise.std(), 0, 255)

    def idct(coef):
        blk = np.einsum("ui,buv,vj->bij", jq.DCT, coef, jq.DCT) + 128.0
        return blk.reshape(-1, 4, 4, 8, 8).transpose(0, 1, 3, 2, 4).reshape(-1, 32, 32)

    def write(img, name):
        rec = np.concatenate([np.zeros((img.shape[0], 1), np.uint8),
                              np.clip(np.round(img), 0, 255).astype(np.uint8).reshape(img.shape[0], -1)], 1)
        path = os.path.join(d, name)
        rec.tofile(path)
        return path

    def run(path):
        r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "jpeg_quality.py"), path, "--json"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return r, (json.loads(r.stdout) if r.returncode == 0 else {})

    for q in (50, 90):
        planes = []
        for i, c in enumerate(jq.ycbcr(x)):
            if i and q == 50:  # 4:2:0: chroma averaged over 2x2 pixels and repeated
                c = np.repeat(np.repeat(c.reshape(-1, 16, 2, 16, 2).mean((2, 4)), 2, 1), 2, 2)
            t = jq.luma_table(q)
            planes.append(idct(np.round(jq.block_dct(c) / t) * t))
        y, cb, cr = planes
        rgb = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], 1)
        r, res = run(write(rgb, f"q{q}.bin"))
        check(f"jpeg_quality.py finds quality {q} ({'4:2:0' if q == 50 else 'full colour'}) in JPEG-quantised images",
              r.returncode == 0 and res["jpeg"] and res["quality_lo"] <= q <= res["quality_hi"] and
              (res["chroma_pair_ratio"] < 0.9) == (q == 50), r.stdout.strip() + r.stderr.strip()[-200:])
    r, res = run(write(x, "plain.bin"))
    check("jpeg_quality.py finds no JPEG lattice in images never quantised",
          r.returncode == 0 and not res["jpeg"] and res["quality_lo"] is None,
          r.stdout.strip() + r.stderr.strip()[-200:])
    bad = os.path.join(d, "short.bin")
    open(bad, "wb").write(b"\0" * 3000)
    r, _ = run(bad)
    check("jpeg_quality.py on a file of no whole CIFAR record fails naming it",
          r.returncode != 0 and "short.bin" in r.stderr and "HINT" in r.stderr, r.stderr.strip()[-200:])


if __name__ == "__main__":
    rc = main()
    print(f"ref_cli: {N_PASS} passed, {N_FAIL} failed")
    sys.exit(1 if (N_FAIL or rc) else 0)
