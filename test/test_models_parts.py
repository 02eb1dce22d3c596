"""Model parts: point sampling and serialization, encoders, denoiser caching, grasp losses."""

from __future__ import annotations

import os

import pytest
import torch

from sceneleap_core.geometry.pointops import farthest_point_sample
from sceneleap_core.geometry.rotations import make_transform, matrix_to_rot6d, random_rotation
from sceneleap_core.hand import GraspNormalizer, pose_to_vector, vector_to_pose
from sceneleap_core.models import GraspDiT, GraspUNet, LiteEncoder, PointNet2Encoder, PointTransformerEncoder
from sceneleap_core.models import pointops as mp
from sceneleap_core.models.losses import GraspLossConfig, GraspSetLoss, hungarian_match, pose_cost_matrix

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cloud(b=2, n=400, seed=0):
    return torch.rand(b, n, 3, generator=torch.Generator().manual_seed(seed)) * 0.3


# ----------------------------------------------------------------------------- sampling
def test_graph_fps_falls_back_to_the_eager_loop_on_cpu():
    pts = _cloud(3, 500)
    assert torch.equal(mp.CudaGraphFPS()(pts, 16), farthest_point_sample(pts, 16))


@pytest.mark.skipif(
    mp.triton is None or os.environ.get("TRITON_INTERPRET") != "1", reason="needs triton + TRITON_INTERPRET=1 on CPU"
)
def test_triton_fps_matches_in_the_interpreter():
    pts = _cloud(2, 300)
    assert torch.equal(mp.farthest_point_sample_triton(pts, 40), farthest_point_sample(pts, 40))


@pytest.mark.parametrize("method", ["voxel", "random", "fps", "first"])
def test_samplers_give_distinct_indices(method):
    pts = _cloud(3, 500)
    idx = mp.sample_points(pts, 100, method, generator=torch.Generator().manual_seed(0))
    assert idx.shape == (3, 100) and idx.dtype == torch.long
    assert all(len(set(row.tolist())) == 100 for row in idx)
    # deterministic mode without a generator reproduces itself
    a = mp.sample_points(pts, 100, method, deterministic=True)
    assert torch.equal(a, mp.sample_points(pts, 100, method, deterministic=True))


def test_voxel_sampling_covers_better_than_random():
    g = torch.Generator().manual_seed(0)
    # a dense blob plus a sparse far cluster: voxel sampling must reach the sparse part
    pts = torch.cat([0.02 * torch.rand(1, 900, 3, generator=g), 0.5 + 0.2 * torch.rand(1, 100, 3, generator=g)], 1)

    def coverage(idx):
        return torch.cdist(pts, pts[:, idx[0]]).min(-1).values.max().item()

    vox = coverage(mp.voxel_sample(pts, 64, generator=g))
    rnd = coverage(mp.random_sample(pts, 64, generator=g))
    fps = coverage(farthest_point_sample(pts, 64))
    assert fps <= vox < rnd


def test_sampler_errors():
    with pytest.raises(ValueError, match="num_samples"):
        mp.sample_points(_cloud(1, 10), 11, "voxel")
    with pytest.raises(ValueError, match="sampler"):
        mp.sample_points(_cloud(1, 10), 2, "grid")
    with pytest.raises(ValueError, match=r"\(B, N, 3\)"):
        mp.voxel_sample(torch.rand(10, 3), 2)


def test_hilbert_curve_visits_grid_neighbours_and_serialize_inverts():
    grid = torch.stack(torch.meshgrid(*[torch.arange(8.0)] * 3, indexing="ij"), -1).reshape(1, -1, 3)  # (1, 512, 3)
    for order, max_step in (("hilbert", 1.0), ("hilbert-trans", 1.0), ("z", 15.0)):
        perm, inverse = mp.serialize(grid, order, bits=3)
        walk = grid[0, perm[0]]
        steps = (walk[1:] - walk[:-1]).abs().sum(-1)
        assert steps.max().item() == max_step and len(set(perm[0].tolist())) == 512
        assert torch.equal(torch.gather(perm, 1, inverse), torch.arange(512)[None])
    with pytest.raises(ValueError, match="order"):
        mp.serialize(grid, "peano")


# ----------------------------------------------------------------------------- encoders
@pytest.mark.parametrize(
    "encoder",
    [
        lambda: PointNet2Encoder(
            out_dim=24, num_points=128, npoints=(64, 16), nsamples=((8,), (8, 16)), widths=(16, 32), presampler="random"
        ),
        lambda: PointNet2Encoder(
            out_dim=24,
            num_points=128,
            npoints=(64, 16),
            nsamples=((8,), (8,)),
            radii=((0.05,), (0.1,)),
            widths=(16, 32),
        ),
        lambda: PointTransformerEncoder(
            out_dim=24, num_points=128, widths=(16, 32), depths=(1, 2), heads=(1, 2), strides=(8,), patch_size=16
        ),
        lambda: LiteEncoder(out_dim=24, num_tokens=16, knn=8, width=16),
    ],
)
def test_encoders_shapes_and_gradients(encoder):
    enc = encoder()
    pts = _cloud(2, 300).requires_grad_(False)
    tokens, xyz = enc(pts, generator=torch.Generator().manual_seed(0))
    assert tokens.shape == (2, enc.num_tokens, enc.out_dim) == (2, 16, 24)
    assert xyz.shape == (2, 16, 3)
    tokens.square().mean().backward()
    assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)
    enc.eval()
    assert torch.equal(enc(pts)[0], enc(pts)[0])  # eval mode is deterministic


def test_encoder_config_errors():
    with pytest.raises(ValueError, match="equal length"):
        PointNet2Encoder(npoints=(64, 16), nsamples=((8,),), widths=(16, 32))
    with pytest.raises(ValueError, match="patch_size"):
        PointTransformerEncoder(
            num_points=96, widths=(16, 32), depths=(1, 1), heads=(1, 1), strides=(2,), patch_size=64
        )
    with pytest.raises(ValueError, match="at least"):
        LiteEncoder(num_tokens=64)(torch.rand(1, 10, 3))


# ----------------------------------------------------------------------------- denoisers
@pytest.mark.parametrize("cls", [GraspDiT, GraspUNet])
def test_cached_scene_equals_recomputed_and_is_reused(cls):
    kw = {"in_dim": 25, "out_dim": 25, "scene_dim": 16, "d_model": 32, "heads": 2}
    net = cls(**kw, **({"depth": 2} if cls is GraspDiT else {"mults": (1, 2)}))
    with torch.no_grad():  # leave the zero init (identity blocks, zero output) behind
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    tokens, xyz = torch.randn(2, 10, 16), torch.rand(2, 10, 3)
    cache = net.precompute_scene(tokens, xyz)
    assert len(cache.kv) == (2 if cls is GraspDiT else 5) and cache.kv[0][0].shape == (2, 2, 10, 16)
    x = torch.randn(2, 7, 25)
    out1 = net(x, torch.tensor(10.0), cache)
    out2 = net(x, torch.tensor(10.0), net.precompute_scene(tokens, xyz))
    assert out1.shape == (2, 7, 25) and torch.equal(out1, out2)
    assert not torch.allclose(out1, net(x, torch.tensor(900.0), cache))  # time matters
    rep = cache.repeat_interleave(3)
    assert rep.batch_size == 6 and torch.allclose(
        net(x.repeat_interleave(3, 0), torch.tensor(10.0), rep)[::3], out1, atol=1e-6
    )


# ----------------------------------------------------------------------------- losses
@pytest.fixture(scope="module")
def grasp_setup(hand):
    g = torch.Generator().manual_seed(0)
    b, k = 2, 3
    rot = random_rotation(b * k, generator=g)
    pose = make_transform(rot, 0.05 * torch.randn(b * k, 3, generator=g))
    joints = hand.joint_lower + (hand.joint_upper - hand.joint_lower) * torch.rand(b * k, hand.dof, generator=g)
    vec = pose_to_vector(pose, joints)  # (B K, 25)
    normalizer = GraspNormalizer.from_hand_limits(hand.joint_lower, hand.joint_upper, translation_range=0.3)
    target = normalizer.normalize(vec).reshape(b, k, -1)  # (B, K, 25)
    points = 0.1 * torch.randn(b, 200, 3, generator=g)
    return normalizer, target, points


def test_grasp_set_loss_terms(hand, grasp_setup):
    normalizer, target, points = grasp_setup
    cfg = GraspLossConfig(
        chamfer=1.0,
        penetration=1.0,
        self_penetration=1.0,
        contact=1.0,
        joint_limits=1.0,
        scene_points=100,
        chamfer_points=64,
    )
    loss = GraspSetLoss(hand, normalizer, cfg)
    same = loss(target, target, points)
    for name in ("translation", "rotation", "joints", "chamfer"):
        assert same[name].item() < 2e-3, name
    pred = (target + 0.1 * torch.randn_like(target)).requires_grad_(True)
    out = loss(pred, target, points)
    assert set(out) == {*GraspLossConfig.TERMS, "total"}
    assert out["translation"] > 0 and out["rotation"] > 0 and out["chamfer"] > same["chamfer"]
    out["total"].backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_grasp_set_loss_anchor_offsets_per_grasp_points_and_weights(hand, grasp_setup):
    """Anchored grasps: offsets move both hands, points may be per grasp, weights pick grasps,
    and ``penetration_over_target`` counts only depth beyond the target's own."""
    normalizer, target, _ = grasp_setup
    b, g = target.shape[:2]
    offsets = torch.tensor([0.5, -0.2, 0.1]).expand(b, g, 3).contiguous()
    pose, joints = vector_to_pose(normalizer.denormalize(target).flatten(0, 1), hand.dof)
    pose[:, :3, 3] += offsets.flatten(0, 1)
    _, centres = hand.box_poses(hand(joints, pose))  # (B G, K, 3): inside the offset hands
    inside = centres.unflatten(0, (b, g))  # (B, G, K, 3) per-grasp points
    pen = GraspSetLoss(hand, normalizer, GraspLossConfig(translation=0, rotation=0, joints=0, penetration=1.0))
    assert pen(target, target, inside, offsets=offsets)["penetration"] > 1e-3
    assert pen(target, target, inside)["penetration"].item() == 0.0  # without offsets the hands are elsewhere
    # weights: only grasp 0 of scene 0 counted -> its own value
    w = torch.zeros(b, g)
    w[0, 0] = 1.0
    alone = pen(target[:1, :1], target[:1, :1], inside[:1, :1], offsets=offsets[:1, :1])["penetration"]
    torch.testing.assert_close(pen(target, target, inside, offsets=offsets, weight=w)["penetration"], alone)
    # over the target: a prediction as deep as its target costs nothing, a deeper one does
    over = GraspSetLoss(hand, normalizer, GraspLossConfig(translation=0, rotation=0, joints=0, penetration=1.0,
                                                          penetration_over_target=True))  # fmt: skip
    assert over(target, target, inside, offsets=offsets)["penetration"].item() == 0.0
    far = target.clone()
    far[..., :3] = normalizer.normalize(normalizer.denormalize(target) + torch.tensor([1.0] + [0.0] * 24))[..., :3]
    assert over(target, far, inside, offsets=offsets)["penetration"] > 1e-3  # target moved away, pred stays in
    # contact over the target: as close as the target costs nothing, farther away does, closer is free
    cfg = dict(translation=0, rotation=0, joints=0, contact=1.0, contact_over_target=True)
    touch = GraspSetLoss(hand, normalizer, GraspLossConfig(**cfg))
    plain = GraspSetLoss(hand, normalizer, GraspLossConfig(**{**cfg, "contact_over_target": False}))
    assert plain(target, target, inside, offsets=offsets)["contact"] > 0  # the candidates are off the box centres
    assert touch(target, target, inside, offsets=offsets)["contact"].item() == 0.0
    assert touch(far, target, inside, offsets=offsets)["contact"] > 0.5  # pred 1 m away from its points
    assert touch(target, far, inside, offsets=offsets)["contact"].item() == 0.0
    with pytest.raises(ValueError, match="offsets"):
        pen(target, target, inside, offsets=offsets[:, :1])
    with pytest.raises(ValueError, match="weight"):
        pen(target, target, inside, weight=torch.ones(b, g + 1))
    with pytest.raises(ValueError, match="points"):
        pen(target, target, inside[:, :1])


def test_grasp_set_loss_hungarian_matching(grasp_setup):
    normalizer, target, _ = grasp_setup
    perm = torch.tensor([2, 0, 1])
    shuffled = target[:, perm]
    plain = GraspSetLoss(None, normalizer, GraspLossConfig())(shuffled, target)
    matched = GraspSetLoss(None, normalizer, GraspLossConfig(match=True))(shuffled, target)
    assert plain["total"] > 0.1 and matched["total"].item() < 1e-3
    cols = hungarian_match(pose_cost_matrix(shuffled, target, 16))
    assert torch.equal(cols, perm.expand(2, -1))
    # fewer predictions than targets: each matched to its own target
    assert GraspSetLoss(None, normalizer, GraspLossConfig(match=True))(target[:, :2], target)["total"].item() < 1e-3


def test_grasp_loss_errors(hand, grasp_setup):
    normalizer, target, points = grasp_setup
    with pytest.raises(ValueError, match=r"GraspLossConfig\.chamfer"):
        GraspLossConfig(chamfer=-1.0).validate()
    with pytest.raises(ValueError, match="HandModel"):
        GraspSetLoss(None, normalizer, GraspLossConfig(chamfer=1.0))
    loss = GraspSetLoss(hand, normalizer, GraspLossConfig(penetration=1.0))
    with pytest.raises(ValueError, match="pred/target"):
        loss(target[..., :24], target, points)
    with pytest.raises(ValueError, match="equal G"):
        loss(target[:, :2], target, points)
    with pytest.raises(ValueError, match="points"):
        loss(target, target, points[:1])
    with pytest.raises(ValueError, match="scene points"):
        loss(target, target, None)
    with pytest.raises(ValueError, match="unknown"):
        GraspLossConfig.from_dict({"chamfr": 1.0})
    assert matrix_to_rot6d(torch.eye(3)).shape == (6,)


def test_denoiser_exports_and_runs_with_bf16_weights():
    """SceneCache is a pytree node (torch.export takes it as input); bf16 weights take fp32 inputs."""
    import copy

    from sceneleap_core.models import SceneCache

    net = GraspDiT(scene_dim=16, d_model=32, depth=1, heads=2)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    tokens, xyz = torch.randn(2, 8, 16), torch.rand(2, 8, 3)
    cache, x, t = net.precompute_scene(tokens, xyz), torch.randn(2, 5, 25), torch.full((2,), 100.0)
    ref = net(x, t, cache)
    assert torch.equal(net(x, t, SceneCache.from_tuple(cache.to_tuple())), ref)
    exported = torch.export.export(net, (x, t, cache))
    assert torch.allclose(exported.module()(x, t, cache), ref, atol=1e-6)
    half = copy.deepcopy(net).to(torch.bfloat16)
    out = half(x, t, half.precompute_scene(tokens, xyz))
    assert out.dtype == torch.float32 and torch.allclose(out, ref, atol=0.05, rtol=0.05)


def test_pose_loss_weight_scales_the_palm_pose_dimensions_against_the_joints():
    from sceneleap_core.models.generator import GeneratorConfig, pose_loss_weights
    from sceneleap_core.models.objectives import masked_mse

    cfg = GeneratorConfig(pose_loss_weight=4.0).validate()
    w = pose_loss_weights(cfg)  # [translation 3 | joints 16 | rotation 6]
    assert w.shape == (25,) and abs(float(w.mean()) - 1.0) < 1e-6
    assert (
        torch.allclose(w[:3], 4 * w[3])
        and torch.allclose(w[-6:], 4 * w[3])
        and torch.allclose(w[3:19], w[3].expand(16))
    )
    assert pose_loss_weights(GeneratorConfig().validate()) is None
    target = torch.zeros(2, 4, 25)
    pose_err, joint_err = target.clone(), target.clone()
    pose_err[..., 0] = 1.0  # the same squared error on one translation dimension ...
    joint_err[..., 5] = 1.0  # ... or on one joint
    assert masked_mse(pose_err, target, None) == masked_mse(joint_err, target, None)
    assert torch.isclose(masked_mse(pose_err, target, None, w), 4 * masked_mse(joint_err, target, None, w))
    with pytest.raises(ValueError, match="pose_loss_weight"):
        GeneratorConfig(pose_loss_weight=0.0).validate()
