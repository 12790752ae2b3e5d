"""refutil.py -- what the Python reference tests share: the repository's paths, the xbar binary and the
data, and the PASS/FAIL lines with the closing "NAME: N passed, M failed" that tests/run_all.sh reads."""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
XBAR = os.environ.get("XBAR_BIN", os.path.join(ROOT, "build", "xbar"))
DATA = os.environ.get("XBAR_DATA", os.path.join(ROOT, "..", "shared", "data", "cifar10"))
COUNTS = {"pass": 0, "fail": 0}


def check(name, ok, detail=""):
    """one line per check; returns ok"""
    COUNTS["pass" if ok else "fail"] += 1
    print(f"{'PASS' if ok else 'FAIL'}  {name}{': ' + detail if detail else ''}", flush=True)
    return ok


def summary(test):
    """the closing line; the exit status (1 when a check failed)"""
    print(f"{test}: {COUNTS['pass']} passed, {COUNTS['fail']} failed")
    return 1 if COUNTS["fail"] else 0
