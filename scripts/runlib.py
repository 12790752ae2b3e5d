"""runlib.py -- what the experiment scripts share: run an xbar command and read its JSON, and write a
command relative to the repository for the tables in docs/."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
XBAR = os.environ.get("XBAR_BIN", os.path.join(ROOT, "build", "xbar"))


def sh(cmd, who):
    """runs cmd (its stderr passes through), stops the script if it fails, returns its last JSON line"""
    print("%s: %s" % (who, " ".join(cmd)), flush=True)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
    if p.returncode != 0:
        sys.exit("%s: failed (exit %d): %s" % (who, p.returncode, " ".join(cmd)))
    return json.loads([line for line in p.stdout.splitlines() if line.startswith("{")][-1])


def rel(cmd):
    """the command with paths inside the repository written relative to it"""
    return " ".join(os.path.relpath(c, ROOT) if c.startswith(ROOT) else c for c in cmd)
