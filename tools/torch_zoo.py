#!/usr/bin/env python3
"""torch_zoo.py -- PyTorch twins of xbar's model zoo, a generic .cfg interpreter, and weight transfer.

Hand-written twins (written the way the reference repositories write them, so their state_dicts are
the ones people already have):
    MLP                 3072-512-256-10 perceptron
    LeNet5              LeNet-5 for 3x32x32
    VGG("vgg11"|"vgg16") kuangliu/pytorch-cifar models/vgg.py
    VGG("vgg8")         the 6-conv + 2-FC VGG-8 of NeuroSim / the crossbar literature, kuangliu style
    ResNet20            akamaster/pytorch_resnet_cifar10 resnet.py (LambdaLayer option-A shortcut,
                        kaiming_normal_ init of Conv2d and Linear weights)
    ResNet18            kuangliu/pytorch-cifar models/resnet.py
build(name) returns one of them.  CfgNet(path_or_text) builds an nn.Module from any model .cfg
(docs/model-cfg.md), with nested submodules for dotted names so that its state_dict keys are the cfg's
layer names; tests/ref_torch.py checks that CfgNet(configs/models/NAME.cfg) and build(NAME) agree.

CLI (run with a python3 that has torch, e.g. /usr/bin/python3):
    python3 tools/torch_zoo.py export NAME OUT.safetensors [--seed S] [--cfg]
        torch-initialised weights of the twin (or of CfgNet with --cfg), BN buffers included
        (num_batches_tracked as int64), loadable by `xbar ... --weights OUT.safetensors`
    python3 tools/torch_zoo.py import NAME|MODEL.cfg W.safetensors
        loads W (e.g. written by xbar) into the twin (or CfgNet of the .cfg, [quant] layers included)
        strictly (names, shapes, dtypes) and prints OK
    python3 tools/torch_zoo.py info [NAME...]
        parameters and conv/linear MACs per image (the numbers in docs/zoo.md)
"""
import argparse
import os
import re
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.nn.init as init

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG_DIR = os.path.join(ROOT, "configs", "models")
NAMES = ["mlp", "lenet5", "vgg8", "vgg11", "vgg16", "resnet20", "resnet18"]

# ---------------------------------------------------------------------------------------------------
# Hand-written twins
# ---------------------------------------------------------------------------------------------------


class MLP(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.fc1 = nn.Linear(3 * 32 * 32, 512)
        self.fc2 = nn.Linear(512, 256)
        self.fc3 = nn.Linear(256, num_classes)

    def forward(self, x):
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class LeNet5(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


VGG_CFG = {
    "vgg8": [128, 128, "M", 256, 256, "M", 512, 512, "M"],
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """kuangliu/pytorch-cifar VGG; "vgg8" swaps the classifier for Linear(8192,1024)-BN1d-ReLU-Linear."""

    def __init__(self, vgg_name, num_classes=10):
        super().__init__()
        self.features = self._make_layers(VGG_CFG[vgg_name])
        if vgg_name == "vgg8":
            self.classifier = nn.Sequential(nn.Linear(512 * 4 * 4, 1024), nn.BatchNorm1d(1024), nn.ReLU(inplace=True),
                                            nn.Linear(1024, num_classes))
        else:
            self.classifier = nn.Linear(512, num_classes)

    def forward(self, x):
        out = self.features(x)
        out = out.view(out.size(0), -1)
        return self.classifier(out)

    def _make_layers(self, cfg):
        layers = []
        in_channels = 3
        for x in cfg:
            if x == "M":
                layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
            else:
                layers += [nn.Conv2d(in_channels, x, kernel_size=3, padding=1), nn.BatchNorm2d(x), nn.ReLU(inplace=True)]
                in_channels = x
        layers += [nn.AvgPool2d(kernel_size=1, stride=1)]
        return nn.Sequential(*layers)


# --- akamaster/pytorch_resnet_cifar10 -------------------------------------------------------------

def _weights_init(m):
    if isinstance(m, (nn.Linear, nn.Conv2d)):
        init.kaiming_normal_(m.weight)


class LambdaLayer(nn.Module):
    def __init__(self, lambd):
        super().__init__()
        self.lambd = lambd

    def forward(self, x):
        return self.lambd(x)


class BasicBlockA(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            # option A: "For CIFAR10 ResNet paper uses option A."
            self.shortcut = LambdaLayer(lambda x: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4),
                                                        "constant", 0))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        out = F.relu(out)
        return out


class ResNet20(nn.Module):
    """akamaster's ResNet(BasicBlock, [n, n, n]); n = 3 is resnet20."""

    def __init__(self, num_blocks=(3, 3, 3), num_classes=10):
        super().__init__()
        self.in_planes = 16
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make_layer(16, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(32, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(64, num_blocks[2], stride=2)
        self.linear = nn.Linear(64, num_classes)
        self.apply(_weights_init)

    def _make_layer(self, planes, num_blocks, stride):
        layers = []
        for s in [stride] + [1] * (num_blocks - 1):
            layers.append(BasicBlockA(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer1(out)
        out = self.layer2(out)
        out = self.layer3(out)
        out = F.avg_pool2d(out, out.size()[3])
        out = out.view(out.size(0), -1)
        return self.linear(out)


# --- kuangliu/pytorch-cifar ResNet18 --------------------------------------------------------------

class BasicBlockB(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != self.expansion * planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, self.expansion * planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(self.expansion * planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        out = F.relu(out)
        return out


class ResNet18(nn.Module):
    def __init__(self, num_blocks=(2, 2, 2, 2), num_classes=10):
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = self._make_layer(64, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(128, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(256, num_blocks[2], stride=2)
        self.layer4 = self._make_layer(512, num_blocks[3], stride=2)
        self.linear = nn.Linear(512, num_classes)

    def _make_layer(self, planes, num_blocks, stride):
        layers = []
        for s in [stride] + [1] * (num_blocks - 1):
            layers.append(BasicBlockB(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer1(out)
        out = self.layer2(out)
        out = self.layer3(out)
        out = self.layer4(out)
        out = F.avg_pool2d(out, 4)
        out = out.view(out.size(0), -1)
        return self.linear(out)


def build(name):
    """The hand-written twin of zoo model `name` (torch's default init; kaiming_normal for resnet20)."""
    if name == "mlp":
        return MLP()
    if name == "lenet5":
        return LeNet5()
    if name in VGG_CFG:
        return VGG(name)
    if name == "resnet20":
        return ResNet20()
    if name == "resnet18":
        return ResNet18()
    raise ValueError(f"unknown zoo model '{name}'; known: {', '.join(NAMES)}")


# ---------------------------------------------------------------------------------------------------
# CfgNet: any model .cfg as an nn.Module
# ---------------------------------------------------------------------------------------------------

class CfgError(ValueError):
    pass


def parse_ini(text, path="<cfg>"):
    """The same grammar as src/cfg/ini.c, without its byte-level checks: [(type, name, line, {key: (value,
    line)})]."""
    secs = []
    for ln, raw in enumerate(text.splitlines(), start=1):
        s = raw.strip(" \t\r\f\v\ufeff")
        m = re.search(r"(^|[ \t])[#;]", s)
        if m:
            s = s[:m.start()].rstrip(" \t\r")
        if not s:
            continue
        if s.startswith("["):
            if not s.endswith("]"):
                raise CfgError(f"{path}:{ln}: bad section header '{s}'")
            parts = s[1:-1].split()
            if not 1 <= len(parts) <= 2:
                raise CfgError(f"{path}:{ln}: section header '{s}' needs [type] or [type name]")
            name = parts[1] if len(parts) == 2 else ""
            if name and any(sec[1] == name for sec in secs):
                raise CfgError(f"{path}:{ln}: duplicate section name '{name}'")
            secs.append((parts[0], name, ln, {}))
            continue
        if "=" not in s:
            raise CfgError(f"{path}:{ln}: expected key = value, got '{s}'")
        if not secs:
            raise CfgError(f"{path}:{ln}: key before any section")
        k, v = (t.strip() for t in s.split("=", 1))
        if k in secs[-1][3]:
            raise CfgError(f"{path}:{ln}: duplicate key '{k}'")
        secs[-1][3][k] = (v, ln)
    return secs


REQ = object()  # a required key
# key -> (kind, default); kind: int, bool, float, str; default None: computed from other values
_KEYS = {
    "net": {"name": ("str", ""), "input": ("str", REQ), "classes": ("int", REQ), "init": ("str", "torch")},
    "conv2d": {"out_channels": ("int", REQ), "kernel": ("int", REQ), "stride": ("int", 1), "padding": ("int", 0),
               "groups": ("int", 1), "bias": ("bool", True)},
    "linear": {"out_features": ("int", REQ), "bias": ("bool", True)},
    "batchnorm": {"eps": ("float", 1e-5), "momentum": ("float", 0.1)},
    "relu": {}, "gap": {}, "flatten": {},
    "maxpool": {"kernel": ("int", REQ), "stride": ("int", None), "padding": ("int", 0)},
    "avgpool": {"kernel": ("int", REQ), "stride": ("int", None), "padding": ("int", 0)},
    "dropout": {"p": ("float", 0.5)},
    "add": {"inputs": ("str", REQ)},
    "shortcut": {"stride": ("int", 1), "out_channels": ("int", None)},
    "quant": {"mode": ("str", "uniform"), "bits": ("int", None), "clip": ("str", None), "momentum": ("float", 0.01)},
}
# [quantize ...] sections describe weight quantization (docs/quantization.md): not layers; the weights
# xbar writes for a quantized model are already quantized, so the twin needs nothing for them.
_QUANTIZE_KEYS = {"weight", "weight_bits", "weight_scale", "stochastic", "delta", "act", "act_bits", "act_clip",
                  "first_bits", "last_bits"}


def _get(path, typ, keys, key, line):
    kind, default = _KEYS[typ][key]
    if key not in keys:
        if default is REQ:
            raise CfgError(f"{path}:{line}: [{typ}] needs key '{key}'")
        return default
    v, ln = keys[key]
    try:
        if kind == "int":
            if not re.fullmatch(r"[+-]?[0-9]+", v):
                raise ValueError
            return int(v)
        if kind == "float":
            return float(v)
        if kind == "bool":
            return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}[v]
        return v
    except (ValueError, KeyError):
        raise CfgError(f"{path}:{ln}: bad value '{v}' for key '{key}'") from None


class _Box(nn.Module):
    """A container for dotted names ("layer1" in "layer1.0.conv1"); never called."""


class Gap(nn.Module):
    def forward(self, x):
        return F.avg_pool2d(x, (x.shape[2], x.shape[3])).flatten(1)


class Flatten(nn.Module):
    def forward(self, x):
        return x.reshape(x.shape[0], -1)


class Add(nn.Module):
    def forward(self, a, b):
        return a + b


class ShortcutA(nn.Module):
    """Option-A shortcut: x[:, :, ::s, ::s], channels zero-padded (out-in)//2 before, the rest after."""

    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        self.stride, self.lo, self.hi = stride, (out_channels - in_channels) // 2, \
            out_channels - in_channels - (out_channels - in_channels) // 2

    def forward(self, x):
        if self.stride != 1:
            x = x[:, :, ::self.stride, ::self.stride]
        if self.lo or self.hi:
            x = F.pad(x, (0, 0, 0, 0, self.lo, self.hi), "constant", 0)
        return x


class Quant(nn.Module):
    """xbar's [quant] activation quantizer (docs/quantization.md): step * clamp(round(x / step), lo, hi)
    with round half to even (torch.round), float32; a straight-through gradient where the code is inside
    [lo, hi].  pact: alpha a parameter (NAME.alpha); clip = calibrated: a buffer NAME.clip, the running
    maximum of |x| in training."""

    def __init__(self, mode, bits, clip, momentum):
        super().__init__()
        self.mode, self.bits, self.momentum = mode, bits, momentum
        self.calibrated = clip == "calibrated"
        c = 1.0 if mode == "dorefa" else (0.0 if self.calibrated else float(clip))
        if mode == "pact":
            self.alpha = nn.Parameter(torch.tensor([c]))
        elif self.calibrated:
            self.register_buffer("clip", torch.zeros(1))
        self.fixed = c

    def forward(self, x):
        if self.mode == "pact":
            c = self.alpha
        elif self.calibrated:
            if self.training:
                with torch.no_grad():
                    mx = x.abs().max().reshape(1)
                    self.clip.copy_(mx if self.clip.item() <= 0 else self.clip + self.momentum * (mx - self.clip))
            c = self.clip
        else:
            c = torch.tensor([self.fixed], dtype=x.dtype)
        if self.mode == "ternary":
            lo, hi, step = -1.0, 1.0, c
        elif self.mode == "signed":
            hi = float(2 ** (self.bits - 1) - 1)
            lo, step = -hi, c / hi
        else:
            lo, hi = 0.0, float(2 ** self.bits - 1)
            step = c / hi
        code = torch.round(x / step)
        q = torch.clamp(code, lo, hi) * step
        inside = ((code >= lo) & (code <= hi)).to(x.dtype)
        live = x * inside  # the straight-through part: its gradient is the mask (and PACT's 1 above alpha)
        if self.mode == "pact":
            live = live + (code > hi).to(x.dtype) * c
        return live + (q - live).detach()


class CfgNet(nn.Module):
    """nn.Module of a model .cfg (a path, or the text itself when it contains a newline).  Layers are
    registered under their dotted names as nested submodules, so state_dict() keys equal the cfg's
    names; forward runs the graph in file order."""

    def __init__(self, cfg):
        super().__init__()
        if "\n" in cfg:
            path, text = "<cfg>", cfg
        else:
            path, text = cfg, open(cfg).read()
        secs = parse_ini(text, path)
        if not secs or secs[0][0] != "net":
            raise CfgError(f"{path}: the first section must be [net]")
        for typ, name, line, keys in secs:
            if typ == "quantize":
                for k, (v, ln) in keys.items():
                    if k not in _QUANTIZE_KEYS:
                        raise CfgError(f"{path}:{ln}: unknown key '{k}' in section [quantize {name}]")
                continue
            if typ not in _KEYS:
                raise CfgError(f"{path}:{line}: unknown section type '{typ}'")
            allowed = set(_KEYS[typ]) | ({"input"} if typ not in ("net", "add") else set())
            for k, (v, ln) in keys.items():
                if k not in allowed:
                    raise CfgError(f"{path}:{ln}: unknown key '{k}' in section [{typ} {name}]")
        _, _, nline, nkeys = secs[0]
        g = lambda k: _get(path, "net", nkeys, k, nline)  # noqa: E731
        m = re.fullmatch(r"(\d+)x(\d+)x(\d+)", g("input"))
        if not m:
            raise CfgError(f"{path}: [net] input must be CxHxW")
        self.input_shape = tuple(int(t) for t in m.groups())
        self.classes = g("classes")
        self.init = g("init")
        self.net_name = g("name")
        self.graph = []  # (name, type, [input names or None for the image])
        shapes = {None: (self.input_shape, False)}  # name -> ((C, H, W), is_features)
        prev = None
        for typ, name, line, keys in secs[1:]:
            if typ == "quantize":
                continue
            if not name:
                raise CfgError(f"{path}:{line}: layer [{typ}] needs a name")
            gk = lambda k: _get(path, typ, keys, k, line)  # noqa: E731,B023
            if typ == "add":
                ins = [t.strip() for t in gk("inputs").split(",")]
                if len(ins) != 2:
                    raise CfgError(f"{path}:{line}: [add {name}] needs two inputs")
            else:
                ins = [keys["input"][0]] if "input" in keys else [prev]
            for i in ins:
                if i not in shapes:
                    raise CfgError(f"{path}:{line}: [{typ} {name}] input '{i}' is not an earlier layer")
            (c, h, w), feat = shapes[ins[0]]
            if typ == "conv2d":
                oc, k, s, p, gr = gk("out_channels"), gk("kernel"), gk("stride"), gk("padding"), gk("groups")
                mod = nn.Conv2d(c, oc, k, stride=s, padding=p, groups=gr, bias=gk("bias"))
                out = ((oc, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1), False)
            elif typ == "linear":
                if h != 1 or w != 1:
                    raise CfgError(f"{path}:{line}: [linear {name}] needs features; put [flatten] or [gap] before it")
                mod = nn.Linear(c, gk("out_features"), bias=gk("bias"))
                out = ((gk("out_features"), 1, 1), True)
            elif typ == "batchnorm":
                bn = nn.BatchNorm1d if feat else nn.BatchNorm2d
                mod = bn(c, eps=gk("eps"), momentum=gk("momentum"))
                out = shapes[ins[0]]
            elif typ == "relu":
                mod, out = nn.ReLU(), shapes[ins[0]]
            elif typ == "dropout":
                mod, out = nn.Dropout(gk("p")), shapes[ins[0]]
            elif typ in ("maxpool", "avgpool"):
                k, p = gk("kernel"), gk("padding")
                s = gk("stride") or k
                mod = (nn.MaxPool2d if typ == "maxpool" else nn.AvgPool2d)(k, stride=s, padding=p)
                out = ((c, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1), False)
            elif typ == "gap":
                mod, out = Gap(), ((c, 1, 1), True)
            elif typ == "flatten":
                mod, out = Flatten(), ((c * h * w, 1, 1), True)
            elif typ == "add":
                if shapes[ins[1]][0] != (c, h, w):
                    raise CfgError(f"{path}:{line}: [add {name}] inputs differ in shape")
                mod, out = Add(), shapes[ins[0]]
            elif typ == "quant":
                mode = gk("mode")
                bits = gk("bits") if "bits" in keys else 2
                clip = gk("clip") or {"dorefa": "1", "pact": "6"}.get(mode, "calibrated")
                mod, out = Quant(mode, bits, clip, gk("momentum")), shapes[ins[0]]
            elif typ == "shortcut":
                s = gk("stride")
                oc = gk("out_channels") or c
                mod = ShortcutA(c, oc, s)
                out = ((oc, (h + s - 1) // s, (w + s - 1) // s), feat)
            self._register(name, mod, path, line)
            self.graph.append((name, typ, ins))
            shapes[name] = out
            prev = name
        last = shapes[prev][0]
        if last != (self.classes, 1, 1):
            raise CfgError(f"{path}: the last layer gives {last}, not {self.classes} classes")
        if self.init == "kaiming_normal":
            for mod in self.modules():
                if isinstance(mod, (nn.Conv2d, nn.Linear)):
                    init.kaiming_normal_(mod.weight)
        elif self.init != "torch":
            raise CfgError(f"{path}: [net] init must be torch or kaiming_normal")

    def _register(self, name, mod, path, line):
        parts = name.split(".")
        parent = self
        for part in parts[:-1]:
            child = parent._modules.get(part)
            if child is None:
                child = _Box()
                parent.add_module(part, child)
            elif not isinstance(child, _Box):
                raise CfgError(f"{path}:{line}: '{name}' is nested under a layer")
            parent = child
        if parts[-1] in parent._modules:
            raise CfgError(f"{path}:{line}: '{name}' clashes with another layer's name")
        parent.add_module(parts[-1], mod)

    def layer(self, name):
        return self.get_submodule(name)

    def forward(self, x):
        outs = {None: x}
        for name, typ, ins in self.graph:
            mod = self.get_submodule(name)
            outs[name] = mod(outs[ins[0]], outs[ins[1]]) if typ == "add" else mod(outs[ins[0]])
        return outs[self.graph[-1][0]]


def zoo_cfg_path(name):
    return os.path.join(CFG_DIR, name + ".cfg")


# ---------------------------------------------------------------------------------------------------
# Weights to and from safetensors
# ---------------------------------------------------------------------------------------------------

def state_to_numpy(model):
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def save_weights(model, path, metadata=None):
    st_np.save(path, state_to_numpy(model), metadata=metadata)


def load_weights(model, path):
    """Loads a safetensors file into model strictly: same names, shapes and dtypes, nothing missing or
    left over (raises ValueError naming the tensors)."""
    t = st_np.load(path)
    sd = model.state_dict()
    missing = [k for k in sd if k not in t]
    extra = [k for k in t if k not in sd]
    bad = [f"{k}: file {t[k].dtype} {list(t[k].shape)} vs model {str(sd[k].dtype)[6:]} {list(sd[k].shape)}"
           for k in sd if k in t and (tuple(t[k].shape) != tuple(sd[k].shape) or
                                      torch.from_numpy(np.ascontiguousarray(t[k])).dtype != sd[k].dtype)]
    if missing or extra or bad:
        msg = [f"{path} does not fit the model:"]
        msg += [f"  missing: {k}" for k in missing[:10]] + [f"  unexpected: {k}" for k in extra[:10]]
        msg += [f"  {b}" for b in bad[:10]]
        raise ValueError("\n".join(msg))
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in t.items()}, strict=True)
    return model


# ---------------------------------------------------------------------------------------------------
# Counting
# ---------------------------------------------------------------------------------------------------

def count(model, input_shape=(3, 32, 32)):
    """(trainable parameters, conv+linear multiply-accumulates per image)."""
    macs = []

    def hook(mod, inp, out):
        if isinstance(mod, nn.Conv2d):
            macs.append(out[0].numel() * mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1])
        elif isinstance(mod, nn.Linear):
            macs.append(mod.in_features * mod.out_features)

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *input_shape))
    model.train(was)
    for h in hs:
        h.remove()
    return sum(p.numel() for p in model.parameters()), sum(macs)


def _main(argv):
    ap = argparse.ArgumentParser(prog="torch_zoo.py", description="PyTorch twins of the xbar zoo")
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="write torch-initialised weights as safetensors")
    e.add_argument("name", choices=NAMES)
    e.add_argument("out")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--cfg", action="store_true", help="build CfgNet from configs/models/NAME.cfg instead")
    i = sub.add_parser("import", help="load safetensors weights into the twin strictly")
    i.add_argument("name", help=f"a zoo name ({', '.join(NAMES)}) or a model .cfg (CfgNet; e.g. a quantized "
                                "run's OUT/model.cfg)")
    i.add_argument("weights")
    n = sub.add_parser("info", help="parameters and MACs per image")
    n.add_argument("names", nargs="*", help=f"default: all of {', '.join(NAMES)}")
    a = ap.parse_args(argv)
    if a.cmd == "export":
        torch.manual_seed(a.seed)
        model = CfgNet(zoo_cfg_path(a.name)) if a.cfg else build(a.name)
        save_weights(model, a.out, metadata={"model": a.name, "seed": str(a.seed), "source": "tools/torch_zoo.py",
                                             "torch": torch.__version__})
        n_t = len(model.state_dict())
        print(f"wrote {a.out}: {a.name}, {n_t} tensors, {sum(p.numel() for p in model.parameters())} parameters")
    elif a.cmd == "import":
        if a.name not in NAMES and not a.name.endswith(".cfg"):
            ap.error(f"'{a.name}' is neither a zoo model ({', '.join(NAMES)}) nor a .cfg file")
        model = build(a.name) if a.name in NAMES else CfgNet(a.name)
        try:
            load_weights(model, a.weights)
        except (ValueError, st_np.SafetensorsError) as err:
            print(f"torch_zoo.py import: {err}", file=sys.stderr)
            return 1
        print(f"OK: {a.weights} loads into {a.name} strictly ({len(model.state_dict())} tensors, "
              f"{sum(p.numel() for p in model.parameters())} parameters)")
    else:
        for name in a.names:
            if name not in NAMES:
                ap.error(f"unknown model '{name}'; known: {', '.join(NAMES)}")
        print(f"{'model':<10} {'params':>12} {'MACs/image':>15}")
        for name in a.names or NAMES:
            p, m = count(build(name))
            print(f"{name:<10} {p:>12,} {m:>15,}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
