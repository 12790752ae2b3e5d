#!/usr/bin/env python3
"""neurosim_vgg8.py -- traces for DNN+NeuroSim V1.4's C++ core without its Python side (docs/energy.md,
"Side by side with NeuroSim").

NeuroSim's inference.py needs torchvision, a GPU-less patch and its trained VGG8.pth (not in the public
repository).  This driver does what matters of it on the CPU: it builds the repository's own VGG-8
(models/VGG.vgg8, WAGE mode, 8-bit weights and activations, random WAGE initialization with inference.py's
seed), installs the repository's own trace hooks (utee/hook.hardware_evaluation), and runs the first images
of a CIFAR-10 binary test batch, normalized as its models/dataset.py does.  The hooks write the per-layer
weight and input CSVs and layer_record_VGG8/trace_command.sh, which runs the C++ core.

  git clone https://github.com/neurosim/DNN_NeuroSim_V1.4 && cd DNN_NeuroSim_V1.4/Inference_pytorch
  (cd NeuroSIM && make)
  /usr/bin/python3 /path/to/xbar/tools/neurosim_vgg8.py --cifar ../shared/data/cifar10/test_batch.bin
  bash layer_record_VGG8/trace_command.sh > vgg8.txt

Run it from Inference_pytorch (it imports the repository's modules from there).  Needs torch (python3-torch).
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.getcwd())
from utee import hook, misc  # noqa: E402  (NeuroSim's modules, from the working directory)

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
# inference.py's defaults; its hooks and model read these attributes
p.add_argument("--mode", default="WAGE")
p.add_argument("--model", default="VGG8")
p.add_argument("--wl_weight", type=int, default=8)
p.add_argument("--wl_grad", type=int, default=8)
p.add_argument("--wl_activate", type=int, default=8)
p.add_argument("--wl_error", type=int, default=8)
p.add_argument("--inference", type=int, default=0)
p.add_argument("--subArray", type=int, default=128)
p.add_argument("--parallelRead", type=int, default=128)
p.add_argument("--ADCprecision", type=int, default=5)
p.add_argument("--cellBit", type=int, default=1)
p.add_argument("--onoffratio", type=float, default=10)
p.add_argument("--vari", type=float, default=0.0)
p.add_argument("--t", type=float, default=0)
p.add_argument("--v", type=float, default=0)
p.add_argument("--detect", type=int, default=0)
p.add_argument("--target", type=float, default=0)
p.add_argument("--seed", type=int, default=117)
p.add_argument("--nimg", type=int, default=10, help="images in the batch (the hooks trace the first)")
p.add_argument("--cifar", required=True, help="a CIFAR-10 binary batch (test_batch.bin)")
args = p.parse_args()

misc.logger.init("log", "log")
torch.manual_seed(args.seed)
from models import VGG  # noqa: E402

model = VGG.vgg8(args=args, logger=misc.logger.info, pretrained=None)
model.eval()
raw = np.fromfile(args.cifar, dtype=np.uint8).reshape(-1, 3073)[: args.nimg]
x = torch.tensor(raw[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)
x = (x - 0.5) / 0.5  # models/dataset.py: Normalize((0.5,) * 3, (0.5,) * 3)
hooks = hook.hardware_evaluation(model, args.wl_weight, args.wl_activate, args.subArray, args.parallelRead,
                                 args.model, args.mode)
with torch.no_grad():
    model(x)
hook.remove_hook_list(hooks)
print("traces written to layer_record_VGG8/; run: bash layer_record_VGG8/trace_command.sh")
