"""Cloud files: LZF, PCD (ascii / binary / binary_compressed, organized with NaNs), PLY, numpy."""

import numpy as np
import pytest

from sceneleap_core.infer.cloud_io import (
    load_cloud,
    load_cloud_fields,
    lzf_compress,
    lzf_decompress,
    read_pcd,
    write_pcd,
    write_ply,
)


def test_lzf_decodes_literals_and_overlapping_back_references():
    # "abc" as a literal run, then a 9-byte back reference at distance 3 (long form: 7 + extra 0)
    stream = bytes([0x02]) + b"abc" + bytes([0xE0, 0x00, 0x02])
    assert lzf_decompress(stream, 12) == b"abcabcabcabc"
    # short form: length (1 + 2) = 3 at distance 1 -> "xxxx"
    assert lzf_decompress(bytes([0x00]) + b"x" + bytes([0x20, 0x00]), 4) == b"xxxx"
    with pytest.raises(ValueError, match="LZF"):
        lzf_decompress(bytes([0x20, 0x05]), 4)  # reference before the start
    with pytest.raises(ValueError, match="expected 13"):
        lzf_decompress(stream, 13)
    rng = np.random.default_rng(0)
    data = (np.repeat(rng.integers(0, 4, 500), 7).astype(np.uint8).tobytes() + rng.bytes(300)) * 3
    packed = lzf_compress(data)
    assert len(packed) < len(data) / 2 and lzf_decompress(packed, len(data)) == data


@pytest.mark.parametrize("mode", ["ascii", "binary", "binary_compressed"])
def test_pcd_round_trip_keeps_organized_nan_holes_and_extra_fields(tmp_path, mode):
    rng = np.random.default_rng(1)
    pts = rng.uniform(-1, 1, (6 * 5, 3)).astype(np.float32)
    pts[[3, 17]] = np.nan  # holes of an organized 6 x 5 cloud
    intensity = rng.uniform(0, 1, 30).astype(np.float32)
    path = write_pcd(tmp_path / f"c_{mode}.pcd", pts, data=mode, fields={"intensity": intensity}, width=6, height=5)
    back = load_cloud(path)
    assert back.shape == (30, 3) and np.isnan(back[[3, 17]]).all()
    assert np.allclose(back, pts, atol=1e-6, equal_nan=True)
    assert np.allclose(read_pcd(path)["intensity"], intensity, atol=1e-6)


def test_pcd_with_mixed_types_and_padding_reads_by_field(tmp_path):
    rec = np.zeros(3, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("pad", "u1", (3,)), ("rgb", "<u4"),
                              ("ring", "<u2")])  # fmt: skip
    rec["x"], rec["y"], rec["z"] = [1, 2, 3], [4, 5, 6], [7, 8, 9]
    rec["rgb"], rec["ring"] = [0xFF0000, 0x00FF00, 0x0000FF], [0, 1, 2]
    head = ("VERSION .7\nFIELDS x y z _ rgb ring\nSIZE 4 4 4 1 4 2\nTYPE F F F U U U\nCOUNT 1 1 1 3 1 1\n"
            "WIDTH 3\nHEIGHT 1\nPOINTS 3\nDATA binary\n")  # fmt: skip
    path = tmp_path / "mixed.pcd"
    path.write_bytes(head.encode() + rec.tobytes())
    fields = read_pcd(path)
    assert "_" not in fields and fields["rgb"].tolist() == [0xFF0000, 0x00FF00, 0x0000FF]
    assert fields["ring"].dtype == np.uint16 and load_cloud(path)[:, 2].tolist() == [7, 8, 9]
    path.write_bytes(head.encode() + rec.tobytes()[:20])
    with pytest.raises(ValueError, match="expected"):
        read_pcd(path)
    path.write_bytes(head.replace("binary", "binary_compressed").encode() + np.array([40, 57], "<u4").tobytes()
                     + bytes([0x20, 0x09]) * 20)  # fmt: skip
    with pytest.raises(ValueError, match=r"LZF|truncated"):
        read_pcd(path)


@pytest.mark.parametrize("binary", [True, False])
def test_ply_round_trip_and_big_endian(tmp_path, binary):
    pts = np.random.default_rng(2).normal(size=(40, 3)).astype(np.float32)
    assert np.allclose(load_cloud(write_ply(tmp_path / "c.ply", pts, binary=binary)), pts, atol=1e-6)
    head = ("ply\nformat binary_big_endian 1.0\nelement vertex 2\nproperty double x\nproperty double y\n"
            "property double z\nproperty uchar red\nelement face 0\nproperty list uchar int vertex_indices\n"
            "end_header\n")  # fmt: skip
    rec = np.array(
        [(1.0, 2.0, 3.0, 9), (4.0, 5.0, 6.0, 8)], dtype=[("x", ">f8"), ("y", ">f8"), ("z", ">f8"), ("r", "u1")]
    )
    (tmp_path / "be.ply").write_bytes(head.encode() + rec.tobytes())
    fields = load_cloud_fields(tmp_path / "be.ply")
    assert fields["red"].tolist() == [9, 8] and load_cloud(tmp_path / "be.ply").tolist() == [[1, 2, 3], [4, 5, 6]]


def test_numpy_files_and_clear_errors(tmp_path):
    pts = np.arange(12, dtype=float).reshape(3, 4)
    np.save(tmp_path / "a.npy", pts)
    assert np.array_equal(load_cloud(tmp_path / "a.npy"), pts[:, :3])
    np.savez(tmp_path / "b.npz", points=pts, other=np.zeros(2))
    assert np.array_equal(load_cloud(tmp_path / "b.npz"), pts[:, :3])
    np.savez(tmp_path / "c.npz", a=pts, b=pts)
    with pytest.raises(ValueError, match="points, xyz or cloud"):
        load_cloud(tmp_path / "c.npz")
    np.save(tmp_path / "d.npy", np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        load_cloud(tmp_path / "d.npy")
    (tmp_path / "e.xyz").write_text("1 2 3\n")
    with pytest.raises(ValueError, match="suffix"):
        load_cloud(tmp_path / "e.xyz")
    with pytest.raises(ValueError, match="no file"):
        load_cloud(tmp_path / "missing.pcd")
    (tmp_path / "f.ply").write_bytes(b"ply\nformat ascii 1.0\nelement face 1\nend_header\n")
    with pytest.raises(ValueError, match="vertex"):
        load_cloud(tmp_path / "f.ply")
