#!/usr/bin/python3
"""ref_solver.py -- `xbar solve` against ngspice on generated crossbar circuits.

Cases are made with ../shared/tools/xbar_spice.py (ngspice DC operating point, cross-checked there
by a SciPy nodal solve) over shapes 1x1 .. 32x32 (square and not) and regimes from negligible to
severe IR drop and large drivers.  For each case:
  * `xbar solve --method exact` currents agree with ngspice to rtol 1e-6 (xbar_spice.py check);
  * the --effective matrix E written alongside satisfies I = V E (numpy, rtol 1e-12);
some cases also run --method cholmod (exact reference) and --method decoupled (approximate, a loose
bound), and the command's error handling is checked on bad input.

The power the sources deliver, `xbar solve --power` (V^T A V with the input admittance A of
`--admittance`), is checked against ngspice's sum of V_i I_i over the row sources on every case (rtol
1e-6), and A against its own definition (I_src = A V symmetric, A = diag(row sums of G) without
parasitics).

The backward (column-driven) read, `xbar solve --backward`, is checked against ngspice too.
xbar_spice.py only writes the row-driven circuit, so the column-driven netlist is written here
(spice_backward: each column's source -> r_driver -> its bottom column node; each row's left node ->
r_sense -> ground, the current measured by a 0 V source).  Per case (non-square, r_driver != r_sense):
  * Eb from ngspice, one column driven at 1 V at a time (the others at 0 V), against --effective
    (rtol BWD_RTOL, relative to max |Eb|);
  * random column inputs V through ngspice against the --out currents (same tolerance);
  * Eb is not E^T there (the forward E of the same tile differs from Eb^T by > 1e-3), so a mapping that
    swapped the peripherals back would fail.
1T-1R cells (`xbar solve --cell 1t1r`, Newton's method, include/xb_cell.h) are checked against ngspice on
CELL_CASES, made by xbar_spice.py make --cell 1t1r (ngspice's LEVEL=1 NMOS): small and large tiles, low and
high gate voltage, mild to severe wires, weak and strong drivers; together they hold triode, saturated and
reverse-conducting cells (each case's regime counts come from xbar solve --json and must match the
tool's).  Tolerance 1e-6 relative (measured: ~1e-10).
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

# backward read: name, rows, cols, batch, r_wire, r_driver, r_sense, g_max, extra methods
BWD_CASES = [
    ("bwd-6x9", 6, 9, 2, 2.5, 150.0, 40.0, 1e-4, ["cholmod"]),
    ("bwd-16x10-severe", 16, 10, 2, 10.0, 30.0, 300.0, 1e-3, ["decoupled"]),
    ("bwd-12x20-large-driver", 12, 20, 2, 5.0, 1e3, 10.0, 5e-4, []),
]
BWD_RTOL = 1e-9

# 1T-1R: name, rows, cols, batch, xbar_spice.py options (beside --cell 1t1r)
CELL_CASES = [
    ("1t1r-1x1", 1, 1, 3, []),
    ("1t1r-8x8-mixed", 8, 8, 3, []),
    ("1t1r-16x24-low-gate", 16, 24, 2, ["--v-gate", "0.5"]),
    ("1t1r-24x16-high-gate", 24, 16, 2, ["--v-gate", "1.3"]),
    ("1t1r-32x32-severe", 32, 32, 1, ["--r-wire", "10", "--g-max", "1e-3"]),
    ("1t1r-12x20-large-sense", 12, 20, 2, ["--v-gate", "0.55", "--r-sense", "1e5", "--g-max", "1e-3"]),
    ("1t1r-20x12-small-drivers", 20, 12, 2, ["--r-driver", "1", "--r-sense", "1", "--r-wire", "1"]),
    ("1t1r-1x40-row", 1, 40, 2, ["--r-wire", "10", "--g-max", "1e-3", "--lambda", "0"]),
    ("1t1r-40x1-column", 40, 1, 2, ["--r-wire", "10", "--g-max", "1e-3", "--beta", "5e-4", "--vt", "0.3"]),
    ("1t1r-64x64", 64, 64, 1, []),
]
REGIMES = ["cutoff", "triode", "saturation", "reverse_cutoff", "reverse_triode", "reverse_saturation"]

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


def spice_power(G, v, r_wire, r_drv, r_sense):
    """ngspice: the power the row sources deliver, sum_i V_i * (current out of source i), for one input v."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("xbar_spice", TOOL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    n = G.shape[0]
    net = mod.netlist(G, v, r_wire, r_drv, r_sense).splitlines()
    net = [("print " + " ".join(f"i(VIN{i})" for i in range(n))) if ln.startswith("print ") else ln for ln in net]
    with tempfile.TemporaryDirectory() as d:
        f = os.path.join(d, "x.cir")
        with open(f, "w") as fh:
            fh.write("\n".join(net) + "\n")
        r = subprocess.run(["ngspice", "-b", f], capture_output=True, text=True)
    got = {}
    for line in r.stdout.splitlines():
        line = line.strip()
        if line.startswith("i(vin") and "=" in line:
            k, val = line.split("=")
            got[int(k.strip()[5:-1])] = float(val)
    if r.returncode != 0 or len(got) != n:
        raise RuntimeError("ngspice gave no operating point:\n" + "\n".join((r.stdout + r.stderr).splitlines()[-10:]))
    # ngspice's source current flows into the + terminal: a source that delivers power has i < 0
    return float(-sum(v[i] * got[i] for i in range(n)))


def check_power(case_dir, case):
    name = case[0]
    p = json.load(open(os.path.join(case_dir, "params.json")))
    apath, ppath = os.path.join(case_dir, "A.npy"), os.path.join(case_dir, "P.npy")
    r, _, _ = solve(case_dir, "exact", ["--admittance", apath, "--power", ppath])
    if r.returncode != 0:
        report(False, f"{name} power", f"xbar solve failed: {r.stderr.strip()}")
        return
    G, V = np.load(os.path.join(case_dir, "G.npy")), np.load(os.path.join(case_dir, "V.npy"))
    A, P = np.load(apath), np.load(ppath)
    ref = np.array([spice_power(G, V[b], p["r_wire"], p["r_driver"], p["r_sense"]) for b in range(V.shape[0])])
    err = float(np.max(np.abs(P - ref)) / np.max(np.abs(ref)))
    asym = float(np.max(np.abs(A - A.T)) / np.max(np.abs(A)))
    quad = float(np.max(np.abs(np.einsum("bi,ij,bj->b", V, A, V) - P)) / np.max(np.abs(P)))
    report(err <= 1e-6 and asym <= 1e-12 and quad <= 1e-12, f"{name} power vs ngspice",
           f"max rel {err:.2e} (tolerance 1e-6), A asymmetry {asym:.1e}, P = V^T A V to {quad:.1e}")


def check_power_ideal(tmp):
    """Without parasitics the admittance is diagonal: A = diag(sum_j G[i,j])."""
    rng = np.random.default_rng(3)
    G = rng.uniform(1e-6, 1e-4, (9, 13))
    g = os.path.join(tmp, "G_ideal.npy")
    a = os.path.join(tmp, "A_ideal.npy")
    np.save(g, G)
    r = subprocess.run([XBAR, "solve", "--g", g, "--admittance", a, "--r-wire", "0", "--r-driver", "0",
                        "--r-sense", "0"], capture_output=True, text=True)
    ok = r.returncode == 0 and os.path.exists(a)
    err = float(np.max(np.abs(np.load(a) - np.diag(G.sum(1)))) / G.sum(1).max()) if ok else float("inf")
    report(ok and err <= 1e-14, "ideal tile admittance = diag(row sums of G)", f"max rel {err:.1e}")


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


def spice_backward(G, v, r_wire, r_drv, r_sense):
    """ngspice DC operating point of the column-driven circuit: v (cols,) -> row currents (rows,)."""
    n, m = G.shape
    L = ["* crossbar, backward read: columns driven at the bottom, rows sensed at the left"]
    for j in range(m):
        L.append(f"VIN{j} in{j} 0 DC {v[j]:.15e}")
        L.append(f"RD{j} in{j} c{n-1}_{j} {r_drv:.15e}")
    for i in range(n):
        for j in range(m):
            if j > 0:
                L.append(f"RR{i}_{j} r{i}_{j-1} r{i}_{j} {r_wire:.15e}")
            L.append(f"RG{i}_{j} r{i}_{j} c{i}_{j} {1.0 / G[i, j]:.15e}")
            if i > 0:
                L.append(f"RC{i}_{j} c{i-1}_{j} c{i}_{j} {r_wire:.15e}")
        L.append(f"VS{i} r{i}_0 s{i} DC 0")
        L.append(f"RS{i} s{i} 0 {r_sense:.15e}")
    L += [".options reltol=1e-10 abstol=1e-18 vntol=1e-12", ".op", ".control", "set numdgt=15", "run",
          "print " + " ".join(f"i(VS{i})" for i in range(n)), ".endc", ".end"]
    with tempfile.TemporaryDirectory() as d:
        f = os.path.join(d, "x.cir")
        with open(f, "w") as fh:
            fh.write("\n".join(L) + "\n")
        r = subprocess.run(["ngspice", "-b", f], capture_output=True, text=True)
    got = {}
    for line in r.stdout.splitlines():
        line = line.strip()
        if line.startswith("i(vs") and "=" in line:
            k, val = line.split("=")
            got[int(k.strip()[4:-1])] = float(val)
    if r.returncode != 0 or len(got) != n:
        raise RuntimeError("ngspice gave no operating point:\n" + "\n".join((r.stdout + r.stderr).splitlines()[-10:]))
    return np.array([got[i] for i in range(n)])


def check_backward(tmp, case, ex):
    name, rows, cols, batch, r_wire, r_drv, r_sense, g_max, methods = case
    rng = np.random.default_rng(zlib.crc32(name.encode()) % 1000)
    G = rng.uniform(1e-6, g_max, size=(rows, cols))
    V = rng.uniform(0.0, 0.3, size=(batch, cols))
    d = os.path.join(tmp, name)
    os.makedirs(d)
    np.save(os.path.join(d, "G.npy"), G)
    np.save(os.path.join(d, "V.npy"), V)
    t = time.time()
    inputs = list(np.eye(cols)) + list(V)
    try:
        outs = list(ex.map(lambda v: spice_backward(G, v, r_wire, r_drv, r_sense), inputs))
    except RuntimeError as e:
        report(False, f"{name} ngspice", str(e))
        return
    eb_ref, i_ref = np.array(outs[:cols]), np.array(outs[cols:])
    t_spice = time.time() - t

    def run(method, backward=True):
        out, eff = os.path.join(d, f"I_{method}_{backward}.npy"), os.path.join(d, f"E_{method}_{backward}.npy")
        cmd = [XBAR, "solve", "--g", os.path.join(d, "G.npy"), "--effective", eff, "--r-wire", repr(r_wire),
               "--r-driver", repr(r_drv), "--r-sense", repr(r_sense), "--method", method, "--json"]
        if backward:
            cmd += ["--backward", "--v", os.path.join(d, "V.npy"), "--out", out]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            return None, None, r.stderr.strip()
        return np.load(eff), np.load(out) if backward else None, json.loads(r.stdout)

    eb, i, js = run("exact")
    if eb is None:
        report(False, f"{name} backward", f"xbar solve --backward failed: {js}")
        return
    ok = eb.shape == (cols, rows) and i.shape == (batch, rows)
    err_e = float(np.max(np.abs(eb - eb_ref)) / np.max(np.abs(eb_ref))) if ok else float("inf")
    err_i = float(np.max(np.abs(i - i_ref)) / np.max(np.abs(i_ref))) if ok else float("inf")
    report(ok and err_e <= BWD_RTOL, f"{name} backward Eb vs ngspice",
           f"max rel {err_e:.2e} (tolerance {BWD_RTOL:.0e}; ngspice {cols} + {batch} runs, {t_spice:.1f} s; "
           f"solve {js['solve_ms']:.2f} ms)")
    report(ok and err_i <= BWD_RTOL, f"{name} backward I = V Eb vs ngspice", f"max rel {err_i:.2e}")
    e_fwd, _, js = run("exact", backward=False)
    if e_fwd is None:
        report(False, f"{name} forward", js)
        return
    diff = float(np.max(np.abs(e_fwd.T - eb_ref)) / np.max(np.abs(eb_ref)))
    report(diff > 1e-3, f"{name} Eb is not E^T (r_driver != r_sense)", f"max |E^T - Eb| / max Eb = {diff:.2e}")
    for m in methods:
        eb_m, i_m, js = run(m)
        if eb_m is None:
            report(False, f"{name} backward {m}", js)
            continue
        err = float(np.max(np.abs(i_m - i_ref)) / np.max(np.abs(i_ref)))
        tol = {"cholmod": 1e-6, "decoupled": DECOUPLED_BOUND}[m]
        report(err <= tol, f"{name} backward {m} vs ngspice", f"max rel {err:.3e} (tolerance {tol:.0e})")


def check_cell_case(case_dir, name):
    p = json.load(open(os.path.join(case_dir, "params.json")))
    cand = os.path.join(case_dir, "I_1t1r.npy")
    cmd = [XBAR, "solve", "--cell", "1t1r", "--g", os.path.join(case_dir, "G.npy"), "--v", os.path.join(case_dir, "V.npy"),
           "--out", cand, "--r-wire", repr(p["r_wire"]), "--r-driver", repr(p["r_driver"]), "--r-sense",
           repr(p["r_sense"]), "--v-gate-v", repr(p["v_gate"]), "--beta-a-per-v2", repr(p["beta"]), "--v-t-v",
           repr(p["vt"]), "--lambda-per-v", repr(p["lambda"]), "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        report(False, name, f"xbar solve --cell 1t1r failed: {r.stderr.strip()}")
        return {}
    js = json.loads(r.stdout)
    c = subprocess.run([PY, TOOL, "check", case_dir, cand, "--rtol", "1e-6"], capture_output=True, text=True)
    per_mvm = js["solve_ms"] / p["batch"]
    report(c.returncode == 0, f"{name} Newton vs ngspice",
           f"{c.stdout.strip() or c.stderr.strip()} ({per_mvm:.2f} ms per input, ngspice "
           f"{1e3 * p['ngspice_seconds'] / p['batch']:.0f} ms; {js['newton_iterations_max']} iterations)")
    same = js["cells_by_regime"] == p["cells_by_regime"]
    report(same, f"{name} regimes as the tool counts them", f"{js['cells_by_regime']}")
    if name == "1t1r-8x8-mixed":   # EKV in its level-1 limit (n = 1, U_T -> 0) gives ngspice's level-1 answer
        ekv = os.path.join(case_dir, "I_ekv.npy")
        cmd_e = [c if c != cand else ekv for c in cmd if c != "--json"] + ["--mos", "ekv", "--ekv-n", "1", "--ekv-ut-v", "1e-4"]
        r = subprocess.run(cmd_e, capture_output=True, text=True)
        c = subprocess.run([PY, TOOL, "check", case_dir, ekv, "--rtol", "1e-6"], capture_output=True, text=True)
        report(r.returncode == 0 and c.returncode == 0, f"{name} EKV (n 1, U_T 1e-4 V) vs ngspice's level 1",
               (c.stdout.strip() or c.stderr.strip()) + r.stderr.strip()[-200:])
    return js["cells_by_regime"]


def check_cells(tmp, ex):
    def make(case):
        name, rows, cols, batch, opts = case
        out = os.path.join(tmp, name)
        cmd = [PY, TOOL, "make", out, "--cell", "1t1r", "--rows", str(rows), "--cols", str(cols), "--batch",
               str(batch), "--seed", str(zlib.crc32(name.encode()) % 1000)] + opts
        return case, out, subprocess.run(cmd, capture_output=True, text=True)
    total = dict.fromkeys(REGIMES, 0)
    for case, out, r in ex.map(make, CELL_CASES):
        if r.returncode != 0:
            report(False, case[0], f"xbar_spice.py make --cell 1t1r failed: {r.stderr.strip()[-300:]}")
            continue
        for k, v in check_cell_case(out, case[0]).items():
            total[k] += v
    report(total["triode"] > 0 and total["saturation"] > 0 and total["reverse_triode"] > 0,
           "1t1r cases cover triode, saturated and reverse-conducting cells", f"{total}")


def check_errors(tmp):
    """The command fails loudly (exit 1, message with a HINT) on bad input."""
    g = np.full((3, 4), 1e-5)
    g[1, 2] = -1e-6
    np.save(os.path.join(tmp, "bad_G.npy"), g)
    np.save(os.path.join(tmp, "ok_G.npy"), np.abs(g))
    np.save(os.path.join(tmp, "V5.npy"), np.zeros((2, 5)))
    np.save(os.path.join(tmp, "V3.npy"), np.zeros((2, 3)))
    np.save(os.path.join(tmp, "V3b.npy"), np.full((2, 3), 0.3))
    out = os.path.join(tmp, "I_bad.npy")
    trials = [
        ("negative conductance", ["--g", "bad_G.npy", "--v", "V3.npy", "--out", out], 1, "G[1,2]"),
        ("V rows mismatch", ["--g", "ok_G.npy", "--v", "V5.npy", "--out", out], 1, "rows"),
        ("negative r-wire", ["--g", "ok_G.npy", "--v", "V3.npy", "--out", out, "--r-wire", "-1"], 2, "range"),
        ("--v without --out", ["--g", "ok_G.npy", "--v", "V3.npy"], 2, "--out"),
        ("missing file", ["--g", "nope.npy", "--effective", out], 1, "nope.npy"),
        ("--backward V rows mismatch", ["--g", "ok_G.npy", "--v", "V3.npy", "--out", out, "--backward"], 1,
         "column (--backward)"),
        ("--backward negative conductance", ["--g", "bad_G.npy", "--effective", out, "--backward"], 1, "G[1,2]"),
        ("1t1r has no effective matrix", ["--g", "ok_G.npy", "--effective", out, "--cell", "1t1r"], 2, "not linear"),
        ("1t1r needs the inputs", ["--g", "ok_G.npy", "--cell", "1t1r"], 2, "--v and --out"),
        ("1t1r without gate overdrive", ["--g", "ok_G.npy", "--v", "V3.npy", "--out", out, "--cell", "1t1r",
                                         "--v-gate-v", "0.3"], 1, "v_gate_v - v_t_v"),
        ("transistor flag without --cell 1t1r", ["--g", "ok_G.npy", "--v", "V3.npy", "--out", out, "--v-t-v", "0.3"],
         2, "--cell 1t1r"),
        ("1t1r iteration cap", ["--g", "ok_G.npy", "--v", "V3b.npy", "--out", out, "--cell", "1t1r", "--newton-iters",
                                "1"], 1, "did not converge"),
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
        with cf.ThreadPoolExecutor(workers) as ex:
            list(ex.map(lambda t: check_power(t[1], t[2]), sorted(made, key=lambda t: t[0])))
        check_power_ideal(tmp)
        with cf.ThreadPoolExecutor(workers) as ex:
            for case in BWD_CASES:
                check_backward(tmp, case, ex)
        with cf.ThreadPoolExecutor(workers) as ex:
            check_cells(tmp, ex)
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
