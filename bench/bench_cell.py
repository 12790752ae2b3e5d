#!/usr/bin/python3
"""bench_cell.py -- 1T-1R tiles: the exact Newton solve against ngspice, and the networks' linearization against
the Newton solve (docs/solver.md, "Non-linear cells").

Part 1, speed: per size, one case from ../shared/tools/xbar_spice.py make --cell 1t1r (ngspice's DC operating
point, one process per input: what a user of a SPICE flow pays), and `xbar solve --cell 1t1r` on --batch random
inputs of the same tile, at 1 thread and at all cores.  Prints ms per input (MVM) and the ratio to ngspice.

Part 2, accuracy of the network path: with 1-bit input planes every driven row is at 0 or v_read, and xbar
reads each cell as its secant conductance I(G, v_read, 0)/v_read through the exact linear circuit
(`xbar solve --linearize-at v_read`).  Without parasitics that is exact; with them it is a linearization.  Per
regime (parasitics x gate voltage), the max error of that against the Newton solve, relative to the largest
output, next to the error of ignoring the transistor altogether (the linear circuit with the bare G).

    /usr/bin/python3 bench/bench_cell.py [--sizes 64,128] [--batch 16] [--skip-speed] [--skip-accuracy]
"""
import argparse, json, os, subprocess, sys, tempfile, time
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.normpath(os.path.join(ROOT, "..", "shared", "tools", "xbar_spice.py"))
XBAR = os.environ.get("XBAR_BIN", os.path.join(ROOT, "build", "xbar"))
PY = sys.executable or "/usr/bin/python3"


def xsolve(d, g, v, out, circ, extra, threads=None):
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    cmd = [XBAR, "solve", "--cell", "1t1r", "--g", g, "--v", v, "--out", out, "--r-wire", repr(circ[0]),
           "--r-driver", repr(circ[1]), "--r-sense", repr(circ[2])] + extra
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=d)
    if r.returncode != 0:
        sys.exit(f"xbar solve failed: {r.stderr}")
    return r.stdout


def speed(tmp, sizes, batch):
    print("## Per-MVM cost: exact Newton solve vs ngspice (xbar_spice.py defaults: 2.5 ohm wires, 100 ohm driver and "
          "sense, G in 1..100 uS, inputs 0..0.5 V, gate 0.7 V)")
    print("| tile | ngspice s / input | xbar ms / input, 1 thread | ratio | xbar ms / input, all cores | ratio | "
          "Newton iterations | factorizations / input |")
    print("|---|---|---|---|---|---|---|---|")
    for n in sizes:
        d = os.path.join(tmp, f"s{n}")
        r = subprocess.run([PY, TOOL, "make", d, "--cell", "1t1r", "--rows", str(n), "--cols", str(n), "--batch", "1"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"xbar_spice.py make failed: {r.stderr}")
        p = json.load(open(os.path.join(d, "params.json")))
        t_spice = p["ngspice_seconds"]
        # the tile's own check against ngspice, then a batch of random inputs on the same tile
        xsolve(d, "G.npy", "V.npy", "I1.npy", (p["r_wire"], p["r_driver"], p["r_sense"]), [])
        err = np.max(np.abs(np.load(os.path.join(d, "I1.npy")) - np.load(os.path.join(d, "I.npy")))) / \
            np.max(np.abs(np.load(os.path.join(d, "I.npy"))))
        rng = np.random.default_rng(n)
        np.save(os.path.join(d, "VB.npy"), rng.uniform(0, 0.5, (batch, n)))
        row = []
        for th in (1, None):
            best = None
            for _ in range(3):
                js = json.loads(xsolve(d, "G.npy", "VB.npy", "IB.npy", (p["r_wire"], p["r_driver"], p["r_sense"]),
                                       ["--json"], threads=th))
                ms = js["solve_ms"] / batch
                best = ms if best is None or ms < best else best
            row.append((best, js))
        (m1, js1), (ma, _) = row
        print(f"| {n}x{n} | {t_spice:.2f} | {m1:.2f} | {1e3 * t_spice / m1:.0f}x | {ma:.2f} | {1e3 * t_spice / ma:.0f}x | "
              f"{js1['newton_iterations_max']} | {js1['factorizations_mean']:.2f} |  (vs ngspice: {err:.1e})")
    print()


def accuracy(tmp, batch):
    print("## The network path's linearization vs the exact Newton solve (64x64, G uniform in 3.3..33 uS (NEAT's "
          "30k/300k), inputs 0 or 0.5 V with density 0.5, beta 2e-4 A/V^2, v_t 0.4 V, lambda 0.05/V)")
    print("| parasitics (wire / driver / sense, ohm) | V_g (V) | secant linearization: max error | bare G, no "
          "transistor: max error |")
    print("|---|---|---|---|")
    n = 64
    rng = np.random.default_rng(1)
    d = os.path.join(tmp, "acc")
    os.makedirs(d, exist_ok=True)
    np.save(os.path.join(d, "G.npy"), rng.uniform(1 / 300e3, 1 / 30e3, (n, n)))
    np.save(os.path.join(d, "V.npy"), 0.5 * (rng.uniform(size=(batch, n)) < 0.5))
    for circ, label in (((0, 0, 0), "none"), ((5, 1000, 1000), "5 / 1k / 1k (methods.md S8)"),
                        ((10, 1000, 1000), "10 / 1k / 1k")):
        for vg in (0.6, 0.8, 1.0, 1.3):
            gate = ["--v-gate-v", str(vg)]
            xsolve(d, "G.npy", "V.npy", "In.npy", circ, gate)
            xsolve(d, "G.npy", "V.npy", "Il.npy", circ, gate + ["--linearize-at", "0.5"])
            ex = np.load(os.path.join(d, "In.npy"))
            li = np.load(os.path.join(d, "Il.npy"))
            r = subprocess.run([XBAR, "solve", "--g", "G.npy", "--v", "V.npy", "--out", "Ir.npy", "--r-wire",
                                str(circ[0]), "--r-driver", str(circ[1]), "--r-sense", str(circ[2])], cwd=d,
                               capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(r.stderr)
            bare = np.load(os.path.join(d, "Ir.npy"))
            s = np.max(np.abs(ex))
            print(f"| {label} | {vg} | {np.max(np.abs(li - ex)) / s:.2e} | {np.max(np.abs(bare - ex)) / s:.2e} |")
    print()


def main():
    a = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("--sizes", default="64,128")
    a.add_argument("--batch", type=int, default=16)
    a.add_argument("--skip-speed", action="store_true")
    a.add_argument("--skip-accuracy", action="store_true")
    o = a.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if not o.skip_speed:
            speed(tmp, [int(x) for x in o.sizes.split(",")], o.batch)
        if not o.skip_accuracy:
            accuracy(tmp, o.batch)


if __name__ == "__main__":
    main()
