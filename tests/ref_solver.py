#!/usr/bin/python3
"""ref_solver.py -- `xbar solve` against ngspice on generated crossbar circuits.

Cases are made with ../shared/tools/xbar_spice.py (ngspice DC operating point, cross-checked there
by a SciPy nodal solve) over shapes 1x1 .. 32x32 (square and not) and regimes from negligible to
severe IR drop and large drivers.  For each case:
  * `xbar solve --method exact` currents agree with ngspice to rtol 1e-6 (xbar_spice.py check);
  * the --effective matrix E written alongside satisfies I = V E (numpy, rtol 1e-12);
some cases also run --method cholmod (exact reference) and --method decoupled (approximate, a loose
bound), and the command's error handling is checked on bad input.
Runs with /usr/bin/python3 (numpy) from tests/run_all.sh; XBAR_BIN names the binary (default
build/xbar).  Prints "ref_solver: N passed, M failed" last; exits non-zero on any failure.
"""
import concurrent.futures as cf
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.normpath(os.path.join(ROOT, "..", "shared", "tools", "xbar_spice.py"))
XBAR = os.environ.get("XBAR_BIN", os.path.join(ROOT, "build", "xbar"))
PY = sys.executable or "/usr/bin/python3"

# name, rows, cols, batch, xbar_spice.py options, extra methods to run on the case
CASES = [
    ("1x1-mild", 1, 1, 3, [], []),
    ("8x8-mild", 8, 8, 4, [], ["cholmod"]),
    ("16x24-mild", 16, 24, 3, [], []),
    ("24x16-mild", 24, 16, 3, [], ["decoupled"]),
    ("32x32-mild", 32, 32, 2, [], ["decoupled"]),
    ("24x24-negligible", 24, 24, 2, ["--r-wire", "0.01"], []),
    ("24x24-severe", 24, 24, 2, ["--r-wire", "10", "--g-max", "1e-3"], ["cholmod"]),
    ("32x32-severe", 32, 32, 2, ["--r-wire", "10", "--g-max", "1e-3"], []),
    ("12x40-severe", 12, 40, 2, ["--r-wire", "5", "--g-max", "5e-4"], []),
    ("1x40-row", 1, 40, 2, ["--r-wire", "10", "--g-max", "1e-3"], ["decoupled"]),
    ("40x1-column", 40, 1, 2, ["--r-wire", "10", "--g-max", "1e-3"], ["decoupled"]),
    ("16x16-large-drivers", 16, 16, 3, ["--r-driver", "1e4", "--r-sense", "1e3"], []),
    ("20x20-small-drivers", 20, 20, 3, ["--r-driver", "1", "--r-sense", "1", "--r-wire", "1"], []),
]
DECOUPLED_BOUND = 0.05   # loose (mild regimes, single lines): the per-regime table is in docs/solver.md

results = []


def report(ok, name, detail):
    results.append(ok)
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)


def make_case(tmp, case):
    name, rows, cols, batch, opts, _ = case
    out = os.path.join(tmp, name)
    cmd = [PY, TOOL, "make", out, "--rows", str(rows), "--cols", str(cols), "--batch", str(batch),
           "--seed", str(zlib.crc32(name.encode()) % 1000)] + opts
    r = subprocess.run(cmd, capture_output=True, text=True)
    return out, r


def solve(case_dir, method, extra=()):
    cand = os.path.join(case_dir, f"I_{method}.npy")
    eff = os.path.join(case_dir, f"E_{method}.npy")
    p = json.load(open(os.path.join(case_dir, "params.json")))
    cmd = [XBAR, "solve", "--g", os.path.join(case_dir, "G.npy"), "--v", os.path.join(case_dir, "V.npy"),
           "--out", cand, "--effective", eff, "--r-wire", repr(p["r_wire"]), "--r-driver", repr(p["r_driver"]),
           "--r-sense", repr(p["r_sense"]), "--method", method, "--json", *extra]
    return subprocess.run(cmd, capture_output=True, text=True), cand, eff


def check_case(case_dir, case):
    name, _, _, _, _, methods = case
    r, cand, eff = solve(case_dir, "exact")
    if r.returncode != 0:
        report(False, name, f"xbar solve failed: {r.stderr.strip()}")
        return
    ms = json.loads(r.stdout)["solve_ms"]
    c = subprocess.run([PY, TOOL, "check", case_dir, cand, "--rtol", "1e-6"], capture_output=True, text=True)
    report(c.returncode == 0, f"{name} exact vs ngspice", f"{c.stdout.strip() or c.stderr.strip()} ({ms:.2f} ms)")
    V = np.load(os.path.join(case_dir, "V.npy"))
    E = np.load(eff)
    I = np.load(cand)
    err = float(np.max(np.abs(V @ E - I)) / np.max(np.abs(I)))
    report(E.shape == (V.shape[1], I.shape[1]) and err <= 1e-12, f"{name} I = V E", f"max rel {err:.2e}")
    ref = np.load(os.path.join(case_dir, "I.npy"))
    for m in methods:
        r, cand, _ = solve(case_dir, m)
        if r.returncode != 0:
            report(False, f"{name} {m}", r.stderr.strip())
            continue
        err = float(np.max(np.abs(np.load(cand) - ref)) / np.max(np.abs(ref)))
        tol = {"cholmod": 1e-6, "decoupled": DECOUPLED_BOUND}[m]
        report(err <= tol, f"{name} {m} vs ngspice", f"max rel {err:.3e} (tolerance {tol:.0e})")


def check_errors(tmp):
    """The command fails loudly (exit 1, message with a HINT) on bad input."""
    g = np.full((3, 4), 1e-5)
    g[1, 2] = -1e-6
    np.save(os.path.join(tmp, "bad_G.npy"), g)
    np.save(os.path.join(tmp, "ok_G.npy"), np.abs(g))
    np.save(os.path.join(tmp, "V5.npy"), np.zeros((2, 5)))
    np.save(os.path.join(tmp, "V3.npy"), np.zeros((2, 3)))
    out = os.path.join(tmp, "I_bad.npy")
    trials = [
        ("negative conductance", ["--g", "bad_G.npy", "--v", "V3.npy", "--out", out], 1, "G[1,2]"),
        ("V rows mismatch", ["--g", "ok_G.npy", "--v", "V5.npy", "--out", out], 1, "rows"),
        ("negative r-wire", ["--g", "ok_G.npy", "--v", "V3.npy", "--out", out, "--r-wire", "-1"], 2, "range"),
        ("--v without --out", ["--g", "ok_G.npy", "--v", "V3.npy"], 2, "--out"),
        ("missing file", ["--g", "nope.npy", "--effective", out], 1, "nope.npy"),
    ]
    for name, args, want_rc, needle in trials:
        r = subprocess.run([XBAR, "solve", *args], capture_output=True, text=True, cwd=tmp)
        ok = r.returncode == want_rc and needle in r.stderr and not os.path.exists(out)
        report(ok, f"error: {name}", f"exit {r.returncode}, {r.stderr.strip().splitlines()[0] if r.stderr else ''}")


def main():
    t0 = time.time()
    missing = [x for x in (XBAR, TOOL) if not os.path.exists(x)]
    if missing or not shutil.which("ngspice"):
        why = f"missing {', '.join(missing)}" if missing else "ngspice is not installed (apt-get install ngspice)"
        print(f"FAIL set-up: {why}")
        print("ref_solver: 0 passed, 1 failed")
        return 1
    tmp = tempfile.mkdtemp(prefix="xbar-ref-solver-")
    try:
        workers = max(2, min(4, os.cpu_count() or 2))
        with cf.ThreadPoolExecutor(workers) as ex:
            futs = {ex.submit(make_case, tmp, case): case for case in CASES}
            made = []
            for f in cf.as_completed(futs):
                case = futs[f]
                out, r = f.result()
                if r.returncode != 0:
                    report(False, case[0], f"xbar_spice.py make failed: {r.stderr.strip()[-300:]}")
                else:
                    made.append((CASES.index(case), out, case))
        for _, out, case in sorted(made):
            check_case(out, case)
        check_errors(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    npass = sum(results)
    nfail = len(results) - npass
    print(f"({time.time() - t0:.1f} s)")
    print(f"ref_solver: {npass} passed, {nfail} failed")
    return 0 if nfail == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
