"""pybullet_data random_urdfs as an optional object source: 800-999 never reach training."""

import pytest

pytest.importorskip("pybullet_data", reason="optional extra: pip install -e .[pybullet]")

from sceneleap_core.data.objects import build_mesh, make_library, pybullet_urdf_objects

URDF_BASE = 100000  # object ids of random_urdfs NNN are URDF_BASE + NNN


def test_held_out_meshes_are_test_only_and_left_out_of_the_library():
    every = pybullet_urdf_objects(include_test=True)
    assert len(every) > 900
    for spec in every:
        number = spec.id - URDF_BASE
        assert (spec.split == "test") == (number >= 800), (number, spec.split)
    library = make_library(8, use_pybullet=True)
    assert not [s for s in library if s.kind == "urdf" and s.id - URDF_BASE >= 800]
    assert {s.split for s in library if s.kind == "urdf"} == {"train", "val"}
    mesh = build_mesh(library[-1])
    assert 0.03 <= mesh.extents.max() <= 0.15
