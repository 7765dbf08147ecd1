"""An independent safetensors reader/writer (numpy only) for bmtrain4j's interop test.

read FILE       prints JSON {name: {"shape": [...], "sum": float, "first": float}} from FILE
double IN OUT   writes OUT with every F32 tensor of IN multiplied by 2 (same names, shapes, order)
"""
import json
import struct
import sys

import numpy as np


def read(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        assert e["dtype"] == "F32", e
        begin, end = e["data_offsets"]
        out[name] = np.frombuffer(data[begin:end], dtype="<f4").reshape(e["shape"])
    return out


def write(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, a in tensors.items():
        b = np.ascontiguousarray(a, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


if __name__ == "__main__":
    if sys.argv[1] == "read":
        t = read(sys.argv[2])
        print(json.dumps({k: {"shape": list(v.shape), "sum": float(v.astype(np.float64).sum()),
                              "first": float(v.reshape(-1)[0])} for k, v in t.items()}))
    elif sys.argv[1] == "double":
        write(sys.argv[3], {k: v * 2 for k, v in read(sys.argv[2]).items()})
