#!/usr/bin/python3
"""bench_solver.py -- time per tile of the crossbar solver's effective-matrix extraction against SciPy.

xbar (bench/bench_solver.c, linked with build/libxbar.a, one thread, plan reused): the exact solver,
the CHOLMOD reference (up to 256) and the decoupled approximate model, each validated first.
SciPy: sparse LU (splu, SuperLU with its default COLAMD ordering) of the nodal matrix that
../shared/tools/xbar_spice.py's nodal() builds, factor plus the rows solves (one block solve) that
the effective matrix needs -- the same work xbar does.  Matrix assembly is not timed for either.
Every figure is the minimum over repeats (the machine is shared and noisy; read the ratios).
SciPy is skipped above --scipy-max (512: several minutes of SuperLU) and the table says so.

Usage: /usr/bin/python3 bench/bench_solver.py [--sizes 32,64,128,256,512] [--min-time 1.0]
        [--scipy-max 256] [--approx] [--tiles 32] [--csv FILE]
  --approx      also the decoupled model's error against the exact solver per regime
  --tiles N     also N 128x128 tiles through xb_xbar_effective_tiles with all threads
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("BUILD", "build")


def build_bench():
    """Compiles bench/bench_solver.c against the library with the Makefile's flags."""
    lib = os.path.join(ROOT, BUILD, "libxbar.a")
    r = subprocess.run(["make", "-s", "-C", ROOT, f"BUILD={BUILD}", f"{BUILD}/libxbar.a"], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"bench_solver: building the library failed:\n{r.stderr[-2000:]}")
    # the Makefile's BLAS choice: Debian's OpenMP OpenBLAS when present
    arch = [d for d in ("x86_64-linux-gnu", "aarch64-linux-gnu") if os.path.isdir(f"/usr/lib/{d}/openblas-openmp")]
    if arch:
        blas_c = f"-I/usr/include/{arch[0]}/openblas-openmp"
        blas_l = f"-L/usr/lib/{arch[0]}/openblas-openmp -Wl,-rpath,/usr/lib/{arch[0]}/openblas-openmp -lopenblas"
    else:
        blas_c, blas_l = "", "-lopenblas"
    exe = os.path.join(ROOT, BUILD, "bench_solver")
    cmd = " ".join(["cc -std=c11 -D_GNU_SOURCE -O3 -march=native -fopenmp -Iinclude -Isrc", blas_c,
                    "-I/usr/include/suitesparse bench/bench_solver.c", lib, blas_l, "-lcjson -lcholmod -lklu -lm -o", exe])
    r = subprocess.run(cmd, shell=True, cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"bench_solver: compiling bench/bench_solver.c failed:\n{cmd}\n{r.stderr[-2000:]}")
    return exe


def run_csv(args, threads=1):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    r = subprocess.run(args, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"bench_solver: {' '.join(args)} failed:\n{r.stderr[-2000:]}")
    lines = [l for l in r.stdout.splitlines() if l.strip()]
    head = lines[0].split(",")
    return [dict(zip(head, l.split(","))) for l in lines[1:]]


def nodal_matrix(G, r_wire=2.5, r_drv=100.0, r_sense=100.0):
    """The nodal matrix of xbar_spice.py's nodal(), vectorised (same entries, same node numbering)."""
    n, m = G.shape
    gw, gd, gs = 1.0 / r_wire, 1.0 / r_drv, 1.0 / r_sense
    R = np.arange(n * m).reshape(n, m)
    C = n * m + R
    rows, cols, vals = [], [], []
    def link(a, c, g):
        a, c, g = a.ravel(), c.ravel(), np.broadcast_to(g, a.shape).ravel()
        rows.extend([a, c, a, c]); cols.extend([a, c, c, a]); vals.extend([g, g, -g, -g])
    link(R[:, :-1], R[:, 1:], gw)
    link(R, C, G)
    link(C[:-1, :], C[1:, :], gw)
    rows.append(R[:, 0]); cols.append(R[:, 0]); vals.append(np.full(n, gd))
    rows.append(C[-1, :]); cols.append(C[-1, :]); vals.append(np.full(m, gs))
    A = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(2 * n * m,) * 2)
    return A, R[:, 0], C[-1, :], gd, gs


def scipy_time(n, min_time):
    rng = np.random.default_rng(n)
    G = rng.uniform(1e-6, 1e-4, (n, n))
    A, drv, sense, gd, gs = nodal_matrix(G)
    best, reps, t0 = 1e30, 0, time.perf_counter()
    while reps < 1 or (reps < 5 and time.perf_counter() - t0 < min_time):
        a = time.perf_counter()
        lu = spla.splu(A)
        B = np.zeros((A.shape[0], n))
        B[drv, np.arange(n)] = gd
        X = lu.solve(B)
        E = gs * X[sense, :].T
        best = min(best, time.perf_counter() - a)
        reps += 1
    return best, E


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="32,64,128,256,512")
    ap.add_argument("--min-time", type=float, default=1.0)
    ap.add_argument("--scipy-max", type=int, default=256)
    ap.add_argument("--approx", action="store_true")
    ap.add_argument("--tiles", type=int, default=0)
    ap.add_argument("--csv", default=None)
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    exe = build_bench()
    print(f"# crossbar solver, time per tile (n x n, default circuit: 2.5 ohm wires, 100 ohm driver/sense), "
          f"one thread, minimum over repeats; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}", flush=True)
    rows = run_csv([exe, "time", ",".join(map(str, sizes)), str(a.min_time)])
    t = {(int(r["size"]), r["method"]): r for r in rows}
    out = ["size,xbar_exact_ms,xbar_decoupled_ms,cholmod_ms,scipy_splu_ms,scipy_over_exact,exact_gflops"]
    print(f"{'n':>5} {'exact ms':>10} {'decoupled ms':>13} {'CHOLMOD ms':>11} {'SciPy splu ms':>14} {'SciPy/exact':>12}")
    for n in sizes:
        ex = float(t[(n, "exact")]["ms_min"])
        de = float(t[(n, "decoupled")]["ms_min"])
        ch = float(t[(n, "cholmod")]["ms_min"]) if (n, "cholmod") in t else float("nan")
        if n <= a.scipy_max:
            s, E = scipy_time(n, a.min_time)
            s *= 1e3
            ratio = f"{s / ex:.0f}x"
        else:
            s, ratio = float("nan"), "(skipped)"
        print(f"{n:5d} {ex:10.3f} {de:13.3f} {ch:11.3f} {s:14.1f} {ratio:>12}", flush=True)
        out.append(f"{n},{ex},{de},{ch},{s},{s / ex if s == s else float('nan')},{t[(n, 'exact')]['gflops_at_min']}")
    if any(n > a.scipy_max for n in sizes):
        print(f"SciPy skipped above {a.scipy_max} (its time grows ~n^3.7 here: minutes at 512)")
    if a.tiles:
        r = run_csv([exe, "tiles", "128", str(a.tiles)], threads=os.cpu_count() or 1)[0]
        print(f"{a.tiles} tiles of 128x128 with {r['threads']} threads: {float(r['ms_per_tile']):.3f} ms per tile")
    if a.approx:
        print("\n# decoupled model vs exact: max|I_approx - I|/max|I| over 64 inputs V in [0, 0.3] V "
              "(E: same on the matrix; ideal: I = V G)")
        print(f"{'regime':>11} {'n':>5} {'ideal err':>10} {'decoupled err I':>16} {'err E':>10}")
        for r in run_csv([exe, "approx", ",".join(str(n) for n in sizes if n <= 256)]):
            print(f"{r['regime']:>11} {int(r['size']):5d} {float(r['ideal_err_I']):10.2e} "
                  f"{float(r['decoupled_err_I']):16.2e} {float(r['decoupled_err_E']):10.2e}", flush=True)
    if a.csv:
        with open(a.csv, "w") as f:
            f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
