"""Fixture files: named tensors written by the PyTorch references, read by tests/fixture.h.

Layout (little-endian):
  b"FIXT" | u32 count | count x ( u32 name_len | name | u32 dtype (0 f32, 1 i32, 2 f64)
                                 | u32 ndim | i64 dims[ndim] | data )
"""
import struct
import numpy as np

_DTYPES = {np.dtype(np.float32): 0, np.dtype(np.int32): 1, np.dtype(np.float64): 2}


def write(path, tensors):
    """tensors: dict name -> numpy array or torch tensor (float tensors stored as f32
    unless already float64 numpy arrays; ints as i32)."""
    with open(path + ".tmp", "wb") as f:
        f.write(b"FIXT")
        f.write(struct.pack("<I", len(tensors)))
        for name, t in tensors.items():
            a = t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)
            if a.dtype.kind == "f" and a.dtype != np.float64:
                a = a.astype(np.float32)
            elif a.dtype.kind in "iub":
                a = a.astype(np.int32)
            a = np.ascontiguousarray(a)
            nb = name.encode()
            f.write(struct.pack("<I", len(nb)) + nb)
            f.write(struct.pack("<II", _DTYPES[a.dtype], a.ndim))
            f.write(struct.pack("<%dq" % a.ndim, *a.shape))
            f.write(a.tobytes())
    import os
    os.replace(path + ".tmp", path)
