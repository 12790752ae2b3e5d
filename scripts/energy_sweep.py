#!/usr/bin/env python3
"""Energy, latency and area of a network on the crossbar presets, and how energy and accuracy trade against
tile size, ADC bits and cell bits (docs/energy.md).

Three parts, each run only when asked (--parts), every result kept in OUT/results.json so that an interrupted
run resumes where it stopped:

  presets  `xbar energy` of the model on each preset: nominal (input_density) and counted from --images test
           images; OUT/presets.svg stacks each preset's energy by component, OUT/layers-PRESET.svg each layer's.
  sweep    one knob of a base preset (with a per-layer digital gain unless --no-gain) at a time (tile size, ADC
           bits, cell bits); each point is one
           `xbar eval --hw --energy STRIDE` run on --eval-images test images: accuracy of one device sample and the
           energy counted from the same images.  OUT/sweep.svg: accuracy against energy per image.
  neurosim VGG-8 (random initialization, as NeuroSim's run) on configs/hw/neurosim-default.cfg and on the same
           design with the default (ISAAC) [energy] figures, nominal and counted from --images test images.
  tim      a ternary model (--tim-model/--tim-weights) on the count-based ternary arrays (`xbar energy --tim`) for
           rows per access L in 16, 32, 64 and ADC bits in 3..6: accuracy and TOPS/W on --eval-images test images.
  pim      a quantized model against its 16-bit twin on a bit-sliced PIM preset (the activation-density
           paper's comparison): `xbar energy --data` of each, and the ratio.

  /usr/bin/python3 scripts/energy_sweep.py --weights weights/resnet20-onecycle40.safetensors --out runs/energy
        [--model resnet20] [--parts presets,sweep,neurosim,tim,pim] [--presets a,b] [--base bn2023-128] [--images 256]
        [--eval-images 500] [--stride 8] [--threads N] [--data DIR] [--pim-model M.cfg --pim-weights W
        --pim-twin M16.cfg --pim-twin-weights W16 --pim-hw isaac-like]

Standard library and matplotlib (for the plots) only; needs build/xbar (make).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runlib import ROOT, XBAR, sh, rel, results, common_flags  # noqa: E402

PRESETS = ["isaac-like", "neurosim-default", "bn2023-128", "txsim-64", "reram-64-full", "reram-128-mild",
           "reram-64-mild"]
COMPONENTS = ["array", "adc", "dac", "sense", "shift_add", "accumulate", "buffer", "digital"]
# (label, section, key, values): one knob of the base preset at a time
SWEEPS = [
    ("tile", "tile", "rows,cols", [32, 64, 128, 256]),
    ("adc_bits", "output", "adc_bits", [4, 5, 6, 7, 8]),
    ("bits_per_cell", "mapping", "bits_per_cell", [1, 2, 4, 8]),
]


def set_keys(text, section, keys, value):
    """the config text with key(s) of [section] set to value (the section added when missing)"""
    lines = text.splitlines()
    for key in keys.split(","):
        at = [i for i, l in enumerate(lines) if l.strip() == "[%s]" % section]
        if not at:
            lines += ["", "[%s]" % section, "%s = %s" % (key, value)]
            continue
        end = next((j for j in range(at[0] + 1, len(lines)) if lines[j].strip().startswith("[")), len(lines))
        hit = [j for j in range(at[0] + 1, end) if lines[j].split("=")[0].strip() == key]
        if hit:
            lines[hit[0]] = "%s = %s" % (key, value)
        else:
            lines.insert(at[0] + 1, "%s = %s" % (key, value))
    return "\n".join(lines) + "\n"


def preset_path(name):
    return name if name.endswith(".cfg") else os.path.join(ROOT, "configs", "hw", name + ".cfg")


def energy_cmd(args, model, weights, hw, measured):
    cmd = [XBAR, "energy", "--model", model, "--hw", hw, "--json", "--quiet", "--threads", str(args.threads)]
    if weights:
        cmd += ["--weights", weights]
    if measured:
        cmd += ["--data", args.data or os.path.join(ROOT, "..", "shared", "data", "cifar10"),
                "--limit", str(args.images), "--stride", str(args.stride)]
    return cmd


def part_presets(args, res, save):
    for p in args.presets.split(","):
        if not os.path.exists(preset_path(p)):
            print("presets: %s: no such preset, skipped" % p)
            continue
        for kind in ("nominal", "measured"):
            key = "%s/%s" % (p, kind)
            if key in res["presets"]:
                continue
            cmd = energy_cmd(args, args.model, args.weights, preset_path(p), kind == "measured")
            res["presets"][key] = {"command": rel(cmd), "report": sh(cmd, "presets")}
            save()


def part_sweep(args, res, save):
    base = open(preset_path(args.base)).read()
    if args.gain:  # a per-layer digital gain: without it IR drop alone takes ResNet-20 to chance on bn2023-128
        base = set_keys(base, "output", "gain_calibration", "per_layer")
    for label, section, keys, values in SWEEPS:
        for v in values:
            key = "%s=%s" % (label, v)
            if key in res["sweep"]:
                continue
            cfg = os.path.join(args.out, "sweep-%s-%s.cfg" % (label, v))
            text = set_keys(base, section, keys, v)
            if label == "bits_per_cell":  # keep the weight bits a multiple of the cell bits
                text = set_keys(text, "mapping", "weight_bits", max(8, v))
            with open(cfg, "w") as f:
                f.write(text)
            cmd = [XBAR, "eval", "--model", args.model, "--hw", cfg, "--seeds", "1", "--limit", str(args.eval_images),
                   "--energy", str(args.stride), "--json", "--quiet", "--no-software"] + common_flags(args)
            if args.weights:
                cmd += ["--weights", args.weights]
            r = sh(cmd, "sweep")
            res["sweep"][key] = {"command": rel(cmd), "config": rel([cfg]), "accuracy": r["hardware"]["accuracy_mean"],
                                 "report": r["energy"]}
            save()


def strip_section(text, section):
    """the config text without [section] (its keys fall back to the defaults)"""
    out, skip = [], False
    for line in text.splitlines():
        if line.strip().startswith("["):
            skip = line.strip() == "[%s]" % section
        if not skip:
            out.append(line)
    return "\n".join(out) + "\n"


def part_neurosim(args, res, save):
    ns = preset_path("neurosim-default")
    isaac = os.path.join(args.out, "neurosim-default-isaac-costs.cfg")
    with open(isaac, "w") as f:
        f.write(strip_section(open(ns).read(), "energy"))
    for label, cfg in (("neurosim-costs", ns), ("isaac-costs", isaac)):
        for kind in ("nominal", "measured"):
            key = "%s/%s" % (label, kind)
            if key in res["neurosim"]:
                continue
            cmd = energy_cmd(args, "vgg8", None, cfg, kind == "measured")
            res["neurosim"][key] = {"command": rel(cmd), "report": sh(cmd, "neurosim")}
            save()


def part_tim(args, res, save):
    if not args.tim_model:
        print("tim: needs --tim-model and --tim-weights, skipped")
        return
    points = [(rows, bits, "") for rows in (16, 32, 64) for bits in (3, 4, 5, 6)]
    points += [(16, 5, "cell_sigma=0.1"), (16, 5, "cell_sigma=0.3"), (16, 5, "count_nonlinearity=0.3")]
    for rows, bits, extra in points:
        key = "L=%d,adc=%d" % (rows, bits) + ("," + extra if extra else "")
        if key not in res["tim"]:
            cfg = os.path.join(args.out, "tim-L%d-b%d%s.cfg" % (rows, bits, "-" + extra.replace("=", "") if extra else ""))
            with open(cfg, "w") as f:
                f.write("[tim]\nrows_per_access = %d\nadc_bits = %d\n%s\n" % (rows, bits, extra.replace("=", " = ")))
            cmd = [XBAR, "energy", "--model", args.tim_model, "--weights", args.tim_weights, "--hw", cfg, "--tim",
                   "--json", "--quiet", "--limit", str(args.eval_images), "--threads", str(args.threads), "--data",
                   args.data or os.path.join(ROOT, "..", "shared", "data", "cifar10")]
            res["tim"][key] = {"command": rel(cmd), "report": sh(cmd, "tim")}
            save()


def part_pim(args, res, save):
    if not (args.pim_model and args.pim_twin):
        print("pim: needs --pim-model/--pim-weights and --pim-twin/--pim-twin-weights, skipped")
        return
    for label, model, weights in (("model", args.pim_model, args.pim_weights),
                                  ("twin", args.pim_twin, args.pim_twin_weights)):
        if label in res["pim"]:
            continue
        cmd = energy_cmd(args, model, weights, preset_path(args.pim_hw), True)
        res["pim"][label] = {"command": rel(cmd), "report": sh(cmd, "pim")}
        save()


def fmt_e(j):
    return "%.3f µJ" % (j * 1e6)


def share(rep, c):
    return 100 * rep["breakdown"][c + "_energy_j"] / rep["total_energy_j"]


def tables(res):
    if res["presets"]:
        print("\n| preset | counts | energy / image | arrays | ADC | DAC | other | latency | area | TOPS/W | frames/s |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for key, row in res["presets"].items():
            r = row["report"]
            other = 100 - share(r, "array") - share(r, "adc") - share(r, "dac")
            print("| %s | %s | %s | %.1f%% | %.1f%% | %.1f%% | %.1f%% | %.1f µs | %.3f mm² | %.3g | %.4g |" % (
                key.split("/")[0], key.split("/")[1], fmt_e(r["total_energy_j"]), share(r, "array"), share(r, "adc"),
                share(r, "dac"), other, r["latency_s"] * 1e6, r["area_m2"] * 1e6, r["tops_per_w"], r["frames_per_s"]))
    if res["sweep"]:
        print("\n| knob | accuracy (1 sample) | energy / image | arrays | ADC | latency | area | TOPS/W |")
        print("|---|---|---|---|---|---|---|---|")
        for key, row in res["sweep"].items():
            r = row["report"]
            print("| %s | %.2f%% | %s | %.1f%% | %.1f%% | %.1f µs | %.3f mm² | %.3g |" % (
                key, 100 * row["accuracy"], fmt_e(r["total_energy_j"]), share(r, "array"), share(r, "adc"),
                r["latency_s"] * 1e6, r["area_m2"] * 1e6, r["tops_per_w"]))
    if res.get("neurosim"):
        print("\n| xbar run (vgg8) | energy / image | arrays | ADC | DAC | shift-add + acc. | buffer | digital | latency |"
              " area | TOPS/W |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for key, row in res["neurosim"].items():
            r, b = row["report"], row["report"]["breakdown"]
            print("| %s | %s | %s | %s | %s | %s | %s | %s | %.1f µs | %.3f mm² | %.3g |" % (
                key, fmt_e(r["total_energy_j"]), fmt_e(b["array_energy_j"]), fmt_e(b["adc_energy_j"]),
                fmt_e(b["dac_energy_j"]), fmt_e(b["shift_add_energy_j"] + b["accumulate_energy_j"]),
                fmt_e(b["buffer_energy_j"]), fmt_e(b["digital_energy_j"]), r["latency_s"] * 1e6, r["area_m2"] * 1e6,
                r["tops_per_w"]))
    if res.get("tim"):
        print("\n| L | ADC bits | accuracy | saturated conversions | energy / image | TOPS/W (network) | TOPS/W (arrays) |"
              " latency |")
        print("|---|---|---|---|---|---|---|---|")
        for key, row in res["tim"].items():
            r = row["report"]
            L, b = key.split(",")[:2]
            conv = sum(x["conversions"] for x in r["layers"])
            sat = sum(x["conversions"] * x["saturation_rate"] for x in r["layers"])
            print("| %s | %s | %.2f%% | %.3f%% | %s | %.3g | %.3g | %.1f µs |" % (
                L.split("=")[1], b.split("=")[1] + "".join(", " + e for e in key.split(",")[2:]), 100 * r["accuracy"], 100 * sat / max(conv, 1),
                fmt_e(r["total_energy_j"]), r["tops_per_w"], r["arrays"]["tops_per_w"], r["latency_s"] * 1e6))
    if len(res["pim"]) == 2:
        m, t = res["pim"]["model"]["report"], res["pim"]["twin"]["report"]
        print("\n| model | energy / image | arrays | ADC | latency | TOPS/W |\n|---|---|---|---|---|---|")
        for label, r in (("16-bit twin", t), ("mixed precision", m)):
            print("| %s | %s | %s | %s | %.1f µs | %.3g |" % (label, fmt_e(r["total_energy_j"]),
                  fmt_e(r["breakdown"]["array_energy_j"]), fmt_e(r["breakdown"]["adc_energy_j"]),
                  r["latency_s"] * 1e6, r["tops_per_w"]))
        print("\nenergy ratio twin / model: %.2fx" % (t["total_energy_j"] / m["total_energy_j"]))


def plots(res, out):
    try:
        import matplotlib
        matplotlib.use("Agg")
        matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: smaller files
        matplotlib.rcParams["svg.hashsalt"] = "xbar"  # the same ids every run
        import matplotlib.pyplot as plt
    except ImportError:
        print("plots: no matplotlib (apt-get install python3-matplotlib); tables only")
        return
    colors = dict(zip(COMPONENTS, plt.get_cmap("tab10").colors))
    meas = [(k.split("/")[0], v["report"]) for k, v in res["presets"].items() if k.endswith("/measured")]
    if meas:
        fig, ax = plt.subplots(figsize=(8, 4))
        bottom = [0.0] * len(meas)
        for c in COMPONENTS:
            vals = [r["breakdown"][c + "_energy_j"] * 1e6 for _, r in meas]
            ax.bar([n for n, _ in meas], vals, bottom=bottom, label=c, color=colors[c])
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax.set_ylabel("energy per image (µJ)")
        ax.set_yscale("log")
        ax.set_title("%s: energy per image by component (counted from test images)" % meas[0][1]["model"])
        ax.legend(fontsize=7, ncol=2)
        plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
        fig.tight_layout()
        fig.savefig(os.path.join(out, "presets.svg"), metadata={"Date": None})
        plt.close(fig)
        for name, r in meas:
            layers = [L for L in r["layers"] if L["kind"] in ("crossbar", "digital")]
            fig, ax = plt.subplots(figsize=(10, 4))
            bottom = [0.0] * len(layers)
            for c in COMPONENTS:
                vals = [L[c + "_energy_j"] * 1e9 for L in layers]
                ax.bar(range(len(layers)), vals, bottom=bottom, label=c, color=colors[c])
                bottom = [b + v for b, v in zip(bottom, vals)]
            ax.set_xticks(range(len(layers)))
            ax.set_xticklabels([L["name"] for L in layers], rotation=60, ha="right", fontsize=7)
            ax.set_ylabel("energy per image (nJ)")
            ax.set_title("%s on %s: energy per layer" % (r["model"], name))
            ax.legend(fontsize=7, ncol=4)
            fig.tight_layout()
            fig.savefig(os.path.join(out, "layers-%s.svg" % name), metadata={"Date": None})
            plt.close(fig)
    if res["sweep"]:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for (label, _, _, _), mk in zip(SWEEPS, "osD^"):
            pts = [(k.split("=")[1], v) for k, v in res["sweep"].items() if k.split("=")[0] == label]
            if not pts:
                continue
            xs = [v["report"]["total_energy_j"] * 1e6 for _, v in pts]
            ys = [100 * v["accuracy"] for _, v in pts]
            ax.plot(xs, ys, marker=mk, label=label)
            for (val, _), x, y in zip(pts, xs, ys):
                ax.annotate(val, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("energy per image (µJ)")
        ax.set_ylabel("accuracy (%)")
        ax.set_title("accuracy against energy, one knob of the base preset at a time")
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(out, "sweep.svg"), metadata={"Date": None})
        plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--weights", default=os.path.join(ROOT, "weights", "resnet20-onecycle40.safetensors"))
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "energy"))
    ap.add_argument("--parts", default="presets,sweep")
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--base", default="bn2023-128", help="the preset the sweep varies")
    ap.add_argument("--no-gain", dest="gain", action="store_false",
                    help="the sweep's base without [output] gain_calibration = per_layer")
    ap.add_argument("--images", type=int, default=256, help="test images the preset counts come from")
    ap.add_argument("--eval-images", type=int, default=500, help="test images of each sweep point")
    ap.add_argument("--stride", type=int, default=8, help="sample stride of the arrays' V^T A V")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--data", default=None)
    ap.add_argument("--pim-model"), ap.add_argument("--pim-weights"), ap.add_argument("--pim-twin")
    ap.add_argument("--pim-twin-weights"), ap.add_argument("--pim-hw", default="isaac-like")
    ap.add_argument("--tim-model"), ap.add_argument("--tim-weights")
    args = ap.parse_args()
    if not os.path.exists(XBAR):
        sys.exit("energy_sweep: %s is missing. HINT: run make first" % XBAR)
    res, save = results(args.out, {"presets": {}, "sweep": {}, "pim": {}, "neurosim": {}, "tim": {}})
    res.setdefault("neurosim", {})
    res.setdefault("tim", {})
    parts = args.parts.split(",")
    for p in parts:
        if p not in ("presets", "sweep", "pim", "neurosim", "tim"):
            sys.exit("energy_sweep: --parts %s: unknown part. HINT: presets, sweep, neurosim, tim, pim" % p)
    if "presets" in parts:
        part_presets(args, res, save)
    if "sweep" in parts:
        part_sweep(args, res, save)
    if "neurosim" in parts:
        part_neurosim(args, res, save)
    if "tim" in parts:
        part_tim(args, res, save)
    if "pim" in parts:
        part_pim(args, res, save)
    tables(res)
    plots(res, args.out)


if __name__ == "__main__":
    main()
