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


# the SGD recipe every training table shares (learning rate and epochs are each table's own)
SGD_RECIPE = ["--schedule", "cosine", "--nesterov", "--momentum", "0.9", "--weight-decay", "5e-4", "--batch", "128"]


def common_flags(args):
    """--threads and, when given, --data: what every xbar command of a table run takes"""
    return ["--threads", str(args.threads)] + (["--data", args.data] if args.data else [])


def results(out, empty=None):
    """out/results.json (made if missing) as a dict, and a function that saves it atomically, so that an
    interrupted table resumes from the rows it finished"""
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "results.json")
    res = json.load(open(path)) if os.path.exists(path) else (empty if empty is not None else {})

    def save():
        with open(path + ".tmp", "w") as f:
            json.dump(res, f, indent=1)
        os.replace(path + ".tmp", path)
    return res, save
