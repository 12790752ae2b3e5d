#!/usr/bin/env python3
"""run.py -- xbar against PyTorch on this machine, side by side in one run (`make bench`).

For each model (resnet20, vgg11 by default), mode (train, infer) and thread count (1, 2) it runs
xbar's CLI and PyTorch 1.13 (bench/torch_bench.py, Debian's python3-torch) alternately, REPEAT times
each, and reports the median images/s, the ratio xbar/PyTorch and the peak resident memory (RSS of the
whole process, as the kernel counts it).  Batch 128.  The machine is noisy: read the ratios, not one
absolute figure.

  xbar train: `xbar train --steps S+2` with its usual augmentation on CIFAR-10, timing the training loop
              only, without its first two steps (steady_images_per_s in its JSON), as bench/torch_bench.py
              times S steps of PyTorch after two untimed warm-up steps.
  xbar infer: `xbar eval --limit N` (eval mode; images/s of the evaluation loop incl. batch assembly).

Usage: /usr/bin/python3 bench/run.py [--models resnet20,vgg11] [--threads 1,2] [--repeat 3]
                                      [--train-steps 20] [--infer-images 2560] [--csv FILE]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
XBAR = os.environ.get("XBAR_BIN", os.path.join(ROOT, "build", "xbar"))
PY = "/usr/bin/python3"


def run(cmd, env=None):
    """Runs cmd, returns (last JSON line of stdout, peak RSS in MiB of that child)."""
    r = subprocess.run(["/usr/bin/time", "-f", "MAXRSS %M"] + cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"benchmark command failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-2000:]}")
    rss = [int(l.split()[1]) for l in r.stderr.splitlines() if l.startswith("MAXRSS")]
    js = [l for l in r.stdout.splitlines() if l.startswith("{")]
    return json.loads(js[-1]), (rss[-1] / 1024.0 if rss else float("nan"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="resnet20,vgg11")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--train-steps", type=int, default=20)
    ap.add_argument("--infer-images", type=int, default=2560)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--csv", default=None)
    a = ap.parse_args()
    if not os.access(XBAR, os.X_OK):
        sys.exit(f"{XBAR} not found: run make first")
    rows = []
    print(f"{'model':<9} {'mode':<6} {'thr':>3} {'xbar img/s':>11} {'torch img/s':>12} {'ratio':>6} "
          f"{'xbar MiB':>9} {'torch MiB':>10}")
    for model in a.models.split(","):
        out = f"/tmp/xbar-bench-{model}"
        for mode in ("train", "infer"):
            for th in [int(t) for t in a.threads.split(",")]:
                env = dict(os.environ, OMP_NUM_THREADS=str(th))
                xs, ts, xm, tm = [], [], [], []
                for _ in range(a.repeat):
                    if mode == "train":
                        cmd = [XBAR, "train", "--model", model, "--steps", str(a.train_steps + 2), "--batch", str(a.batch),
                               "--threads", str(th), "--out", out, "--quiet", "--json"]
                        j, m = run(cmd, env)
                        xs.append(j["steady_images_per_s"])
                    else:
                        w = os.path.join(out, "weights.safetensors")
                        if not os.path.exists(w):  # any weights do for timing
                            run([XBAR, "train", "--model", model, "--steps", "1", "--batch", "16", "--threads", str(th),
                                 "--out", out, "--quiet", "--json"], env)
                        cmd = [XBAR, "eval", "--model", model, "--weights", w, "--limit", str(a.infer_images),
                               "--batch", str(a.batch), "--threads", str(th), "--quiet", "--json"]
                        j, m = run(cmd, env)
                        xs.append(j["images_per_s"])
                    xm.append(m)
                    steps = a.train_steps if mode == "train" else max(1, a.infer_images // a.batch)
                    j, m = run([PY, os.path.join(ROOT, "bench", "torch_bench.py"), model, mode, str(th), str(a.batch),
                                str(steps)], env)
                    ts.append(j["images_per_s"])
                    tm.append(m)
                x, t = statistics.median(xs), statistics.median(ts)
                row = dict(model=model, mode=mode, threads=th, xbar=x, torch=t, ratio=x / t, xbar_mib=max(xm),
                           torch_mib=max(tm))
                rows.append(row)
                print(f"{model:<9} {mode:<6} {th:>3} {x:>11.1f} {t:>12.1f} {x / t:>6.2f} {max(xm):>9.0f} {max(tm):>10.0f}",
                      flush=True)
    if a.csv:
        with open(a.csv, "w") as f:
            f.write("model,mode,threads,xbar_img_s,torch_img_s,ratio,xbar_peak_mib,torch_peak_mib\n")
            for r in rows:
                f.write(f"{r['model']},{r['mode']},{r['threads']},{r['xbar']:.2f},{r['torch']:.2f},{r['ratio']:.3f},"
                        f"{r['xbar_mib']:.0f},{r['torch_mib']:.0f}\n")


if __name__ == "__main__":
    main()
