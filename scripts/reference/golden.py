"""Writes golden arrays as .safetensors (f32, little endian) with NumPy only,
so that the reference scripts need neither the safetensors package nor the
Rust code they check."""
import json
import struct

import numpy as np


def save(path, arrays, metadata=None):
    header, blobs, offset = {}, [], 0
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name], dtype="<f4")
        blob = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def fixed_input(shape, seed):
    """A reproducible input in [-1, 1] with both smooth and sharp content."""
    rng = np.random.default_rng(seed)
    n, c, h, w = shape
    y, x = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    smooth = np.stack([np.sin(3 * x + k) * np.cos(2 * y - k) for k in range(c)])[None]
    return (0.6 * smooth + 0.4 * rng.uniform(-1, 1, shape)).astype("f4")
