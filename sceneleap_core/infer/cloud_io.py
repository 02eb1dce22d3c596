"""Point-cloud files without Open3D: ``.npy``/``.npz``, ``.pcd`` (ascii, binary, binary_compressed)
and ``.ply`` (ascii, binary_little_endian / big_endian), read into numpy.

    xyz = load_cloud("scan.pcd")                    # (N, 3) float64; NaN rows kept (organized clouds)
    fields = load_cloud_fields("scan.ply")          # {"x": (N,), "y": ..., "intensity": ...}
    write_pcd("out.pcd", xyz, data="binary_compressed")

PCD ``binary_compressed`` data is LZF-compressed and stored field by field (all x, then all y, ...);
:func:`lzf_decompress` and :func:`lzf_compress` are small pure-Python versions of liblzf's format.
Open3D (a design-card dependency) is not needed here, so the GPU machine (no Open3D wheel) reads
the same files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PCD_TYPES = {("F", 4): "f4", ("F", 8): "f8", ("I", 1): "i1", ("I", 2): "i2", ("I", 4): "i4", ("I", 8): "i8",
             ("U", 1): "u1", ("U", 2): "u2", ("U", 4): "u4", ("U", 8): "u8"}  # fmt: skip
PLY_TYPES = {"char": "i1", "uchar": "u1", "short": "i2", "ushort": "u2", "int": "i4", "uint": "u4",
             "float": "f4", "double": "f8", "int8": "i1", "uint8": "u1", "int16": "i2", "uint16": "u2",
             "int32": "i4", "uint32": "u4", "float32": "f4", "float64": "f8"}  # fmt: skip
SUFFIXES = (".npy", ".npz", ".pcd", ".ply")


################################################################################
#                                     LZF                                      #
################################################################################


def lzf_decompress(data: bytes, size: int) -> bytes:
    """liblzf decompression: ``data`` -> exactly ``size`` bytes (ValueError on a corrupt stream).

    Control byte c: c < 32 -> c + 1 literal bytes follow; else a back reference of length
    (c >> 5) + 2 (7 -> an extra length byte is added) at distance ((c & 31) << 8) + next byte + 1."""
    out = bytearray(size)
    ip, op, n = 0, 0, len(data)
    while ip < n:
        ctrl = data[ip]
        ip += 1
        if ctrl < 32:
            run = ctrl + 1
            if op + run > size or ip + run > n:
                raise ValueError("LZF: literal run past the end of the data (corrupt or truncated)")
            out[op : op + run] = data[ip : ip + run]
            op, ip = op + run, ip + run
            continue
        length = ctrl >> 5
        if length == 7:
            if ip >= n:
                raise ValueError("LZF: truncated back reference")
            length += data[ip]
            ip += 1
        if ip >= n:
            raise ValueError("LZF: truncated back reference")
        ref = op - ((ctrl & 0x1F) << 8) - data[ip] - 1
        ip += 1
        length += 2
        if ref < 0 or op + length > size:
            raise ValueError("LZF: back reference outside the output (corrupt data)")
        if ref + length <= op:
            out[op : op + length] = out[ref : ref + length]
        else:  # overlapping: byte by byte (repeats a pattern)
            for i in range(length):
                out[op + i] = out[ref + i]
        op += length
    if op != size:
        raise ValueError(f"LZF: expected {size} bytes, decompressed {op}")
    return bytes(out)


def lzf_compress(data: bytes) -> bytes:
    """A small greedy LZF compressor (3-byte hash of the last position; liblzf-compatible output)."""
    out = bytearray()
    lit = bytearray()
    table: dict[bytes, int] = {}
    i, n = 0, len(data)

    def flush():
        for a in range(0, len(lit), 32):
            chunk = lit[a : a + 32]
            out.append(len(chunk) - 1)
            out.extend(chunk)
        lit.clear()

    while i < n:
        key = data[i : i + 3]
        ref = table.get(key) if len(key) == 3 else None
        if len(key) == 3:
            table[key] = i
        if ref is not None and 0 < i - ref <= 8192:
            length = 3
            while i + length < n and length < 264 and data[ref + length] == data[i + length]:
                length += 1
            flush()
            off = i - ref - 1
            if length - 2 < 7:
                out.append(((length - 2) << 5) | (off >> 8))
            else:
                out.append((7 << 5) | (off >> 8))
                out.append(length - 2 - 7)
            out.append(off & 0xFF)
            i += length
        else:
            lit.append(data[i])
            i += 1
    flush()
    return bytes(out)


################################################################################
#                                     PCD                                      #
################################################################################


def _pcd_header(raw: bytes, path) -> tuple[dict, int]:
    header, pos = {}, 0
    while True:
        end = raw.find(b"\n", pos)
        if end < 0:
            raise ValueError(f"{path}: PCD header without a DATA line")
        line = raw[pos:end].decode("ascii", "replace").strip()
        pos = end + 1
        if not line or line.startswith("#"):
            continue
        key, *values = line.split()
        header[key.upper()] = values
        if key.upper() == "DATA":
            return header, pos


def read_pcd(path: str | Path) -> dict[str, np.ndarray]:
    """A PCD file -> {field: (N,) or (N, count) array} (``_`` padding fields dropped)."""
    path = Path(path)
    raw = path.read_bytes()
    h, pos = _pcd_header(raw, path)
    for key in ("FIELDS", "SIZE", "TYPE"):
        if key not in h:
            raise ValueError(f"{path}: PCD header lacks {key}")
    names, sizes, types = h["FIELDS"], [int(s) for s in h["SIZE"]], h["TYPE"]
    counts = [int(c) for c in h.get("COUNT", ["1"] * len(names))]
    if not len(names) == len(sizes) == len(types) == len(counts):
        raise ValueError(
            f"{path}: PCD FIELDS/SIZE/TYPE/COUNT lengths differ: {len(names)}/{len(sizes)}/{len(types)}/{len(counts)}"
        )
    if "POINTS" in h:
        n = int(h["POINTS"][0])
    else:
        n = int(h.get("WIDTH", ["0"])[0]) * int(h.get("HEIGHT", ["1"])[0])
    try:
        dtypes = [np.dtype(PCD_TYPES[(t.upper(), s)]) for t, s in zip(types, sizes, strict=True)]
    except KeyError as err:
        raise ValueError(f"{path}: unsupported PCD field type/size {err.args[0]}") from None
    mode = h["DATA"][0].lower()
    cols: list[np.ndarray] = []
    if mode == "ascii":
        text = raw[pos:].decode("ascii", "replace").split()
        width = sum(counts)
        if len(text) < n * width:
            raise ValueError(f"{path}: PCD ascii data has {len(text)} values, expected {n} x {width}")
        table = np.array(text[: n * width], dtype=np.float64).reshape(n, width) if n else np.zeros((0, width))
        at = 0
        for c, dt in zip(counts, dtypes, strict=True):
            part = table[:, at : at + c]
            cols.append(part.astype(dt))
            at += c
    elif mode == "binary":
        dt = np.dtype([(f"f{i}", d, (c,)) for i, (d, c) in enumerate(zip(dtypes, counts, strict=True))])
        if len(raw) - pos < n * dt.itemsize:
            raise ValueError(f"{path}: PCD binary data is {len(raw) - pos} bytes, expected {n * dt.itemsize}")
        rec = np.frombuffer(raw, dtype=dt, count=n, offset=pos)
        cols = [rec[f"f{i}"] for i in range(len(names))]
    elif mode == "binary_compressed":
        if len(raw) - pos < 8:
            raise ValueError(f"{path}: PCD binary_compressed data lacks its size header")
        csize, usize = (int(v) for v in np.frombuffer(raw, "<u4", 2, pos))
        body = raw[pos + 8 : pos + 8 + csize]
        if len(body) < csize:
            raise ValueError(f"{path}: PCD binary_compressed data truncated ({len(body)} of {csize} bytes)")
        plain = lzf_decompress(body, usize)
        at = 0
        for d, c in zip(dtypes, counts, strict=True):
            nbytes = n * c * d.itemsize
            cols.append(np.frombuffer(plain, dtype=d, count=n * c, offset=at).reshape(n, c))
            at += nbytes
        if at != usize:
            raise ValueError(f"{path}: PCD binary_compressed holds {usize} bytes, fields need {at}")
    else:
        raise ValueError(f"{path}: PCD DATA {mode!r} unsupported (ascii, binary, binary_compressed)")
    return {name: (col[:, 0] if col.shape[1] == 1 else col) for name, col in zip(names, cols, strict=True)
            if name != "_"}  # fmt: skip


def write_pcd(path: str | Path, points: np.ndarray, *, data: str = "binary", fields: dict | None = None,
              width: int | None = None, height: int = 1) -> Path:  # fmt: skip
    """Write (N, 3) xyz (float32) and optional extra float32 ``fields`` {name: (N,)} as PCD."""
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    cols = {"x": pts[:, 0], "y": pts[:, 1], "z": pts[:, 2]}
    cols.update({k: np.asarray(v, np.float32).reshape(-1) for k, v in (fields or {}).items()})
    n = len(pts)
    width = n // height if width is None else width
    head = (f"# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\nFIELDS {' '.join(cols)}\n"
            f"SIZE {' '.join(['4'] * len(cols))}\nTYPE {' '.join(['F'] * len(cols))}\n"
            f"COUNT {' '.join(['1'] * len(cols))}\nWIDTH {width}\nHEIGHT {height}\n"
            f"VIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA {data}\n")  # fmt: skip
    table = np.stack(list(cols.values()), axis=1)
    if data == "ascii":
        body = "".join(" ".join(f"{v:.8g}" for v in row) + "\n" for row in table).encode()
    elif data == "binary":
        body = table.astype("<f4").tobytes()
    elif data == "binary_compressed":
        plain = table.T.astype("<f4").tobytes()  # field by field
        packed = lzf_compress(plain)
        body = np.array([len(packed), len(plain)], "<u4").tobytes() + packed
    else:
        raise ValueError(f"data: expected ascii, binary or binary_compressed, got {data!r}")
    path = Path(path)
    path.write_bytes(head.encode() + body)
    return path


################################################################################
#                                     PLY                                      #
################################################################################


def read_ply(path: str | Path) -> dict[str, np.ndarray]:
    """The ``vertex`` element of a PLY file (ascii or binary) -> {property: (N,)}. Elements
    before it may be skipped only when they have no list properties."""
    path = Path(path)
    raw = path.read_bytes()
    if not raw.startswith(b"ply"):
        raise ValueError(f"{path}: not a PLY file (no 'ply' magic)")
    end = raw.find(b"end_header")
    if end < 0:
        raise ValueError(f"{path}: PLY header without end_header")
    body = raw.index(b"\n", end) + 1
    fmt, elements = None, []  # [name, count, [(prop, type or ('list', ...))]]
    for line in raw[:end].decode("ascii", "replace").splitlines()[1:]:
        parts = line.split()
        if not parts or parts[0] in ("comment", "obj_info"):
            continue
        if parts[0] == "format":
            fmt = parts[1]
        elif parts[0] == "element":
            elements.append([parts[1], int(parts[2]), []])
        elif parts[0] == "property" and elements:
            if parts[1] == "list":
                elements[-1][2].append((parts[-1], "list"))
            else:
                if parts[1] not in PLY_TYPES:
                    raise ValueError(f"{path}: unsupported PLY property type {parts[1]!r}")
                elements[-1][2].append((parts[2], PLY_TYPES[parts[1]]))
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise ValueError(f"{path}: unsupported PLY format {fmt!r}")
    names = [e[0] for e in elements]
    if "vertex" not in names:
        raise ValueError(f"{path}: PLY file has no vertex element")
    before = elements[: names.index("vertex")]
    _, n, props = elements[names.index("vertex")]
    if any(t == "list" for _, t in props) or any(t == "list" for e in before for _, t in e[2]):
        raise ValueError(f"{path}: list properties in or before the PLY vertex element are unsupported")
    if fmt == "ascii":
        lines = raw[body:].decode("ascii", "replace").splitlines()
        skip = sum(e[1] for e in before)
        rows = [ln.split() for ln in lines[skip : skip + n]]
        if len(rows) < n:
            raise ValueError(f"{path}: PLY ascii data has {len(rows)} vertex rows, expected {n}")
        table = np.array(rows, dtype=np.float64).reshape(n, -1) if n else np.zeros((0, len(props)))
        return {name: table[:, i].astype(t) for i, (name, t) in enumerate(props)}
    order = "<" if fmt == "binary_little_endian" else ">"
    offset = body + sum(e[1] * sum(np.dtype(t).itemsize for _, t in e[2]) for e in before)
    dt = np.dtype([(name, order + t) for name, t in props])
    if len(raw) - offset < n * dt.itemsize:
        raise ValueError(f"{path}: PLY binary data is {len(raw) - offset} bytes, expected {n * dt.itemsize}")
    rec = np.frombuffer(raw, dtype=dt, count=n, offset=offset)
    return {name: rec[name].astype(np.dtype(t)) for name, t in props}


def write_ply(path: str | Path, points: np.ndarray, *, binary: bool = True) -> Path:
    """Write (N, 3) float32 xyz as a PLY vertex element (binary_little_endian or ascii)."""
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    fmt = "binary_little_endian" if binary else "ascii"
    head = (f"ply\nformat {fmt} 1.0\ncomment sceneleap\nelement vertex {len(pts)}\n"
            "property float x\nproperty float y\nproperty float z\nend_header\n")  # fmt: skip
    body = pts.astype("<f4").tobytes() if binary else "".join(f"{a:.8g} {b:.8g} {c:.8g}\n" for a, b, c in pts).encode()
    path = Path(path)
    path.write_bytes(head.encode() + body)
    return path


################################################################################
#                                   Any file                                   #
################################################################################


def load_cloud_fields(path: str | Path) -> dict[str, np.ndarray]:
    """{field: array} of a cloud file (``.npy``/``.npz`` give {"x", "y", "z", "extra" (N, C) if any})."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: expected a point-cloud file, got no file there")
    suffix = path.suffix.lower()
    if suffix in (".npy", ".npz"):
        try:
            data = np.load(path, allow_pickle=False)
        except ValueError as err:
            raise ValueError(f"{path}: unreadable numpy file: {err}") from None
        if suffix == ".npz":
            keys = list(data.keys())
            key = next((k for k in ("points", "xyz", "cloud") if k in keys), keys[0] if len(keys) == 1 else None)
            if key is None:
                raise ValueError(
                    f"{path}: expected an array named points, xyz or cloud (or a single array), got {keys}"
                )
            data = data[key]
        arr = np.asarray(data)
        if arr.ndim == 3:
            arr = arr.reshape(-1, arr.shape[-1])
        if arr.ndim != 2 or arr.shape[1] < 3:
            raise ValueError(f"{path}: expected an (N, 3) or (N, 3 + C) array, got shape {arr.shape}")
        out = {"x": arr[:, 0], "y": arr[:, 1], "z": arr[:, 2]}
        if arr.shape[1] > 3:
            out["extra"] = arr[:, 3:]
        return out
    if suffix == ".pcd":
        return read_pcd(path)
    if suffix == ".ply":
        return read_ply(path)
    raise ValueError(f"{path}: unsupported cloud file suffix {path.suffix!r}; expected one of {SUFFIXES}")


def load_cloud(path: str | Path) -> np.ndarray:
    """(N, 3) float64 xyz of a cloud file (NaN rows of organized clouds kept; the planner drops them)."""
    fields = load_cloud_fields(path)
    missing = [a for a in "xyz" if a not in fields]
    if missing:
        raise ValueError(f"{path}: expected x, y and z fields, missing {missing} (has {sorted(fields)})")
    return np.stack([np.asarray(fields[a], dtype=np.float64) for a in "xyz"], axis=1)
