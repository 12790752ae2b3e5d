#!/usr/bin/env python3
"""st_np.py -- read and write safetensors files with numpy only (no torch, no safetensors package).

The format (https://github.com/huggingface/safetensors): 8-byte little-endian header length N, N bytes
of JSON header {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
"__metadata__": {"key": "value"}}, then the raw little-endian tensor bytes; offsets count from the end
of the header.  xbar reads and writes F32, F64, I64, I32 and U8 (what this module supports too).

Library use:
    import st_np                                   # with tools/ on sys.path
    tensors = st_np.load("w.safetensors")          # {name: numpy array}, in file order
    tensors, meta = st_np.load("w.safetensors", with_metadata=True)
    st_np.save("w.safetensors", tensors, metadata={"model": "resnet20"})

With PyTorch (this is how weights move between xbar and torch; tools/torch_zoo.py does it for you):
    sd = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    st_np.save("w.safetensors", sd)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in st_np.load("w.safetensors").items()})

CLI:
    python3 tools/st_np.py ls FILE           # name, dtype, shape, min/max of every tensor, metadata
    python3 tools/st_np.py diff A B          # max |a-b| / max |b| per common tensor, missing names
"""
import json
import os
import struct
import sys

import numpy as np

# safetensors dtype name <-> numpy dtype (little-endian)
DTYPES = {
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "U8": np.dtype("u1"),
}
_NP_TO_ST = {v: k for k, v in DTYPES.items()}
MAX_HEADER = 100 << 20  # the reference implementation's limit


class SafetensorsError(ValueError):
    pass


def _dtype_name(a):
    dt = a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype
    for k, v in DTYPES.items():
        if dt == v:
            return k
    raise SafetensorsError(f"dtype {a.dtype} is not supported (use float32, float64, int64, int32 or uint8)")


def save(path, tensors, metadata=None):
    """Writes {name: array-like} (numpy arrays, or anything np.asarray takes) in the given order.  The
    header is padded with spaces to a multiple of 8 bytes, as the reference implementation does.  The
    file is written to path.tmp and renamed, so readers never see half a file."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, a in tensors.items():
        if name == "__metadata__":
            raise SafetensorsError("'__metadata__' is reserved; pass metadata=")
        a = np.asarray(a)
        st = _dtype_name(a)
        b = np.ascontiguousarray(a, dtype=DTYPES[st]).tobytes()
        header[name] = {"dtype": st, "shape": [int(d) for d in a.shape], "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * (-len(hj) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def load(path, with_metadata=False):
    """Reads a whole file: {name: numpy array} in file order (writable copies, native byte order), and
    the metadata dict too if with_metadata.  Malformed files raise SafetensorsError naming the file and
    the tensor."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise SafetensorsError(f"{path}: {len(raw)} bytes is too short for a safetensors file")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > MAX_HEADER or 8 + n > len(raw):
        raise SafetensorsError(f"{path}: header length {n} does not fit the file of {len(raw)} bytes")
    try:
        header = json.loads(raw[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsError(f"{path}: the header is not valid JSON: {e}") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: the header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    data = raw[8 + n:]
    out = {}
    for name, info in header.items():
        try:
            dt, shape, (b, e) = info["dtype"], info["shape"], info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise SafetensorsError(f"{path}: tensor '{name}': entry lacks dtype, shape or data_offsets") from None
        if dt not in DTYPES:
            raise SafetensorsError(f"{path}: tensor '{name}' has dtype {dt}; supported: {', '.join(DTYPES)}")
        if not all(isinstance(d, int) and d >= 0 for d in shape):
            raise SafetensorsError(f"{path}: tensor '{name}' has a bad shape {shape}")
        count = int(np.prod(shape, dtype=np.int64))
        if not (isinstance(b, int) and isinstance(e, int) and 0 <= b <= e <= len(data)):
            raise SafetensorsError(f"{path}: tensor '{name}': data_offsets [{b}, {e}] outside the data "
                                   f"({len(data)} bytes)")
        if e - b != count * DTYPES[dt].itemsize:
            raise SafetensorsError(f"{path}: tensor '{name}': {e - b} bytes for shape {shape} {dt}")
        arr = np.frombuffer(data, dtype=DTYPES[dt], count=count, offset=b).reshape(shape)
        out[name] = arr.astype(DTYPES[dt].newbyteorder("="), copy=True)
    return (out, meta) if with_metadata else out


def _main(argv):
    if len(argv) >= 2 and argv[0] == "ls":
        for p in argv[1:]:
            t, meta = load(p, with_metadata=True)
            print(f"{p}: {len(t)} tensors, {sum(a.size for a in t.values())} values")
            for k, v in meta.items():
                print(f"  meta {k} = {v}")
            for k, a in t.items():
                rng = f"  [{a.min():.4g}, {a.max():.4g}]" if a.size else ""
                print(f"  {k:<40} {_NP_TO_ST.get(a.dtype.newbyteorder('<'), a.dtype)!s:<4} "
                      f"{'x'.join(map(str, a.shape)) or '()'}{rng}")
        return 0
    if len(argv) == 3 and argv[0] == "diff":
        a, b = load(argv[1]), load(argv[2])
        for k in a:
            if k not in b:
                print(f"  only in {argv[1]}: {k}")
            elif a[k].shape != b[k].shape:
                print(f"  {k}: shape {a[k].shape} vs {b[k].shape}")
            else:
                x, y = a[k].astype(np.float64), b[k].astype(np.float64)
                d = float(np.abs(x - y).max()) if x.size else 0.0
                print(f"  {k:<40} max|diff| {d:.3e}  rel {d / max(float(np.abs(y).max()) if y.size else 0, 1e-30):.3e}")
        for k in b:
            if k not in a:
                print(f"  only in {argv[2]}: {k}")
        return 0
    print(__doc__.split("CLI:")[1].rstrip(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
