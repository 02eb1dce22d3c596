"""Anchored grasps: each grasp token is conditioned on an observed point and expressed relative to it."""

from pathlib import Path

import numpy as np
import pytest
import torch

from sceneleap_core.data.shards import ShardDataset
from sceneleap_core.geometry.anchors import (
    anchor_labels,
    grasp_centres,
    pick_scored,
    select_anchors,
    support_height,
    training_anchors,
)
from sceneleap_core.hand import HandModel, anchor_absolute, anchor_relative, vector_to_pose
from sceneleap_core.infer.planner import GraspPlanner, decode_grasps
from sceneleap_core.models import build_generator
from sceneleap_core.models.denoisers import SceneCache
from sceneleap_core.models.encoders import AnchorEncoder
from sceneleap_core.train.data import GraspSceneDataset, fit_normalizer, usable_indices

SAMPLE = Path(__file__).resolve().parents[1] / "sceneleap_core" / "data" / "sample"


def _tabletop(n_table=600, n_box=200, seed=0):
    """A 40 cm table at z = -0.5 (seen from a camera at the origin, up = +z) with a 6 cm cube
    standing on it: points (N, 3), is_box (N,)."""
    rng = np.random.default_rng(seed)
    table = np.c_[rng.uniform(-0.2, 0.2, (n_table, 2)), np.full(n_table, -0.5)]
    box = rng.uniform(-0.03, 0.03, (n_box, 3)) + np.array([0.05, 0.0, -0.47])
    pts = np.concatenate([table, box]) + rng.normal(0, 0.001, (n_table + n_box, 3))
    return pts, np.r_[np.zeros(n_table, bool), np.ones(n_box, bool)]


def test_training_anchors_are_visible_points_of_the_grasped_object_near_the_grasp():
    source = ShardDataset(SAMPLE)
    ds = GraspSceneDataset(source, usable_indices(source)[:3], num_points=1024, num_grasps=8, augment=None)
    hand = HandModel.load()
    for i in range(len(ds)):
        s = ds.decode(int(ds.indices[i]))
        item = ds[i]
        pts, anchors = item["points"].numpy(), item["anchors"].numpy()
        assert anchors.shape == (8, 3)
        d_to_cloud = np.linalg.norm(pts[None] - anchors[:, None], axis=-1).min(axis=1)
        assert d_to_cloud.max() < 1e-6, "every anchor is one of the input points"
        pose, joints = vector_to_pose(item["grasps"].double(), hand.dof)
        centres = grasp_centres(hand, pose.float(), joints.float()).numpy()
        dist = np.linalg.norm(anchors - centres, axis=-1)
        assert np.median(dist) < 0.05, f"anchors {dist} m from their grasp centres"
        # the nearest input point to each anchor's grasp centre lies on an object, not the table
        assert (np.asarray(s.point_object) >= 0).any()


def test_training_anchors_pick_the_grasped_object_and_fall_back_when_it_is_hidden():
    pts, is_box = _tabletop()
    obj = np.where(is_box, 7, -1)
    rng = np.random.default_rng(0)
    centre = np.array([[0.05, 0.0, -0.45], [0.0, 0.0, -0.5]])  # above the box; a centre on the table
    out = training_anchors(pts, obj, centre, np.array([7, 3]), rng)  # object 3 is not in view
    assert is_box[np.argmin(np.linalg.norm(pts - out[0], axis=1))], "anchor of the box grasp is on the box"
    assert np.linalg.norm(out[0] - centre[0]) < 0.03
    assert np.linalg.norm(out[1] - centre[1]) < 0.03, "hidden object: one of the nearest points of any kind"
    with pytest.raises(ValueError, match="non-empty"):
        training_anchors(pts[:0], obj[:0], centre, np.array([7, 3]), rng)


def test_select_anchors_draws_on_objects_above_the_support_plane():
    pts, is_box = _tabletop()
    cloud = torch.tensor(pts, dtype=torch.float32)[None].repeat(2, 1, 1)
    h = support_height(cloud[..., 2])
    assert torch.allclose(h, torch.full((2,), -0.5), atol=0.004), h
    gen = torch.Generator().manual_seed(0)
    anchors = select_anchors(cloud, torch.tensor([0.0, 0.0, 1.0]), 32, generator=gen)
    assert anchors.shape == (2, 32, 3)
    assert (anchors[..., 2] > -0.495).all(), "no anchor on the table"
    # a tilted up vector is honoured: rotate the scene 90 deg about x (up becomes -y)
    rot = torch.tensor([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])
    tilted = select_anchors(cloud @ rot.T, torch.tensor([0.0, -1.0, 0.0]), 16, generator=gen)
    assert ((tilted @ rot)[..., 2] > -0.495).all()
    # a flat cloud has nothing above the plane: anchors fall back to any point
    flat = select_anchors(cloud[:, ~torch.tensor(is_box)], torch.tensor([0.0, 0, 1]), 4, generator=gen)
    assert flat.shape == (2, 4, 3)
    with pytest.raises(ValueError, match="num"):
        select_anchors(cloud, torch.tensor([0.0, 0, 1]), 0)


def test_select_anchors_is_uniform_over_the_points_above_and_a_pure_function_of_its_uniforms():
    pts, is_box = _tabletop()
    cloud = torch.tensor(pts, dtype=torch.float32)[None]
    up = torch.tensor([0.0, 0.0, 1.0])
    above = np.flatnonzero(pts[:, 2] > float(support_height(cloud[..., 2])[0]) + 0.01)  # min_height
    assert 100 < len(above) < 200  # most of the box
    u = torch.rand(1, 40 * len(above), generator=torch.Generator().manual_seed(1))
    anchors = select_anchors(cloud, up, u.shape[1], uniforms=u)[0].numpy()
    hit = np.argmin(np.linalg.norm(pts[None] - anchors[:, None], axis=-1), axis=1)
    counts = np.bincount(hit, minlength=len(pts))
    assert set(np.flatnonzero(counts)) <= set(above), "every draw is a point above the plane"
    assert is_box[hit].all(), "on the box"
    assert counts[above].min() > 10 and counts[above].max() < 80, "each point above drawn ~40 times"
    again = select_anchors(cloud, up, u.shape[1], uniforms=u, generator=torch.Generator().manual_seed(9))[0]
    torch.testing.assert_close(again, torch.from_numpy(anchors), atol=0, rtol=0)
    edge = select_anchors(cloud, up, 3, uniforms=torch.tensor([[0.0, 1.0 - 1e-7, 1.0]]))[0].numpy()
    assert all(np.isclose(pts[above], e).all(-1).any() for e in edge), "u = 0, u -> 1 and even u = 1 stay on points above"
    with pytest.raises(ValueError, match="uniforms"):
        select_anchors(cloud, up, 3, uniforms=torch.rand(1, 4))


def test_anchor_relative_round_trips_and_decode_adds_the_anchors_back():
    vec = torch.randn(2, 5, 25, dtype=torch.float64)
    anchors = torch.randn(2, 5, 3, dtype=torch.float64)
    rel = anchor_relative(vec, anchors)
    assert torch.allclose(rel[..., :3], vec[..., :3] - anchors) and torch.equal(rel[..., 3:], vec[..., 3:])
    assert torch.allclose(anchor_absolute(rel, anchors), vec)
    with pytest.raises(ValueError, match="anchors"):
        anchor_relative(vec, anchors[:, :3])
    source = ShardDataset(SAMPLE)
    ds = GraspSceneDataset(source, usable_indices(source)[:2], num_points=512, num_grasps=8, augment=None)
    absolute, relative = fit_normalizer(ds, 4), fit_normalizer(ds, 4, anchored=True)
    span_abs, span_rel = (absolute.upper - absolute.lower)[:3], (relative.upper - relative.lower)[:3]
    assert (span_rel < span_abs).all() and (span_rel < 0.4).all(), (span_rel, span_abs)
    assert torch.equal(relative.lower[3:], absolute.lower[3:])
    hand = HandModel.load()
    item = ds[0]
    z = relative.normalize(anchor_relative(item["grasps"], item["anchors"]))[None]
    pose, _ = decode_grasps(z, relative, hand, item["anchors"][None])
    assert torch.allclose(pose[0, :, :3, 3], item["grasps"][:, :3], atol=1e-5)


def test_anchor_encoder_sees_only_the_local_patch_and_drop_keeps_the_position():
    torch.manual_seed(0)
    enc = AnchorEncoder(32, knn=8, scale=0.05, width=16, pe_freqs=3).eval()
    pts = torch.rand(1, 200, 3)
    anchors = pts[:, :2].clone()
    base = enc(pts, anchors)
    far = pts.clone()
    d = (pts[0] - anchors[0, 0]).norm(dim=-1)
    _, near_idx = d.topk(8, largest=False)
    moved = torch.ones(200, dtype=torch.bool)
    moved[near_idx] = False
    far[0, moved] += 5.0  # everything outside anchor 0's patch moves away
    assert torch.allclose(enc(far, anchors)[0, 0], base[0, 0], atol=1e-6)
    near = pts.clone()
    near[0, near_idx[1:]] += 0.01
    assert not torch.allclose(enc(near, anchors)[0, 0], base[0, 0], atol=1e-4)
    dropped = enc(pts, anchors, torch.tensor([True]))
    assert not torch.allclose(dropped, base, atol=1e-4)
    assert torch.allclose(dropped, enc(pts + 0.3 * (torch.rand_like(pts) - 0.5), anchors, torch.tensor([True])))


def test_anchor_region_reaches_further_than_the_patch_and_scene_tokens_enter_by_interpolation():
    torch.manual_seed(0)
    pts = torch.rand(1, 400, 3)
    anchors = pts[:, :2].clone()
    d = (pts[0] - anchors[0, 0]).norm(dim=-1)
    order = d.argsort()
    ring = pts.clone()
    ring[0, order[20:40]] += 0.01  # beyond the 8-point patch, inside the 4 x 8-point region
    patch_only = AnchorEncoder(32, knn=8, width=16, pe_freqs=3).eval()
    with_region = AnchorEncoder(32, knn=8, width=16, pe_freqs=3, region_knn=8, region_scale=0.2).eval()
    assert torch.allclose(patch_only(ring, anchors)[0, 0], patch_only(pts, anchors)[0, 0], atol=1e-6)
    assert not torch.allclose(with_region(ring, anchors)[0, 0], with_region(pts, anchors)[0, 0], atol=1e-4)
    # the region takes every 4th of its 32 nearest points: the 33rd and beyond are not seen
    beyond = pts.clone()
    beyond[0, order[33:]] += 5.0
    assert torch.allclose(with_region(beyond, anchors)[0, 0], with_region(pts, anchors)[0, 0], atol=1e-6)

    enc = AnchorEncoder(32, knn=8, width=16, pe_freqs=3, scene_dim=12).eval()
    tokens, xyz = torch.randn(1, 10, 12), torch.rand(1, 10, 3)
    with pytest.raises(ValueError, match="scene"):
        enc(pts, anchors)
    base = enc(pts, anchors, scene=(tokens, xyz))
    # a token far from every anchor (not among their 3 nearest) changes nothing; the nearest one does
    dist = torch.cdist(anchors, xyz)[0]  # (2, 10)
    far_tok, near_tok = int(dist.min(0).values.argmax()), int(dist[0].argmin())
    assert dist[:, far_tok].min() > dist.topk(3, largest=False).values[:, -1].max()
    changed = tokens.clone()
    changed[0, far_tok] += 3.0
    assert torch.allclose(enc(pts, anchors, scene=(changed, xyz)), base, atol=1e-6)
    changed[0, near_tok] += 3.0
    assert not torch.allclose(enc(pts, anchors, scene=(changed, xyz))[0, 0], base[0, 0], atol=1e-4)
    # the null scene replaces the interpolated tokens too
    dropped = enc(pts, anchors, torch.tensor([True]), scene=(tokens, xyz))
    assert torch.allclose(dropped, enc(pts, anchors, torch.tensor([True]), scene=(changed, xyz)))


def test_generator_with_region_and_scene_context_trains_samples_and_scores():
    model = build_generator("tiny", anchor="seed", anchor_region_knn=8, anchor_scene=True)
    pts = torch.rand(2, 128, 3)
    anchors = pts[:, :5].clone()
    x0 = torch.rand(2, 5, 25) * 2 - 1
    out = model.training_loss(pts, x0, anchors=anchors, candidates=pts[:, :9], candidate_labels=torch.ones(2, 9))
    out["loss"].backward()
    assert model.anchor_encoder.region[0].weight.grad.abs().sum() > 0
    assert model.anchor_encoder.scene[0].weight.grad.abs().sum() > 0
    model.eval()
    assert model.sample(pts, steps=2, anchors=anchors).shape == (2, 5, 25)
    scene = model.encoder(pts, deterministic=True)
    assert torch.allclose(model.score_anchors(pts, anchors), model.score_anchors(pts, anchors, scene))
    with pytest.raises(ValueError, match="anchor_region_knn"):
        build_generator("tiny", anchor="seed", anchor_region_knn=-1)


def test_anchored_generator_trains_samples_and_rejects_missing_anchors():
    model = build_generator("tiny", anchor="seed")
    pts = torch.rand(2, 128, 3)
    x0 = torch.rand(2, 6, 25) * 2 - 1
    anchors = pts[:, :6]
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(2):  # adaLN-Zero: the first step only reaches the output layer
        opt.zero_grad()
        out = model.training_loss(pts, x0, gen, anchors=anchors)
        out["loss"].backward()
        opt.step()
    assert torch.isfinite(out["loss"]) and model.anchor_encoder.patch[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="anchor='seed'"):
        model.training_loss(pts, x0, gen)
    with pytest.raises(ValueError, match="one per grasp"):
        model.training_loss(pts, x0, gen, anchors=pts[:, :5])
    with pytest.raises(ValueError, match="anchor='none'"):
        build_generator("tiny").training_loss(pts, x0, gen, anchors=anchors)
    model.eval()
    z = model.sample(pts, num_grasps=99, steps=3, anchors=anchors, guidance_scale=2.0, generator=gen)
    assert z.shape == (2, 6, 25), "one grasp per anchor"
    # the anchor conditions the token: moving one anchor changes the prediction of that scene only
    a2 = anchors.clone()
    a2[0, 0] += 0.2
    t = torch.full((2,), 500.0)
    cache = model.encode_scene(pts, anchors=anchors, deterministic=True)
    y1 = model.denoiser(x0, t, cache)
    y2 = model.denoiser(x0, t, model.encode_scene(pts, anchors=a2, deterministic=True))
    assert not torch.allclose(y1[0, 0], y2[0, 0], atol=1e-6) and torch.allclose(y1[1], y2[1])
    back = SceneCache.from_tuple(cache.to_tuple())
    assert torch.equal(model.denoiser(x0, t, back), y1)
    with pytest.raises(ValueError, match=r"GeneratorConfig\.anchor"):
        build_generator("tiny", anchor="nearest")


def test_planner_with_an_anchored_model_returns_anchors_on_the_objects(tmp_path):
    pts, is_box = _tabletop(n_table=800, n_box=300)
    model = build_generator("tiny", anchor="seed").eval()
    source = ShardDataset(SAMPLE)
    ds = GraspSceneDataset(source, usable_indices(source)[:2], num_points=256, num_grasps=8, augment=None)
    model.save_pretrained(tmp_path, normalizer=fit_normalizer(ds, 2, anchored=True),
                          extra_config={"data": {"num_points": 512, "frame": "gravity"}})  # fmt: skip
    planner = GraspPlanner.from_pretrained(tmp_path)
    # unfiltered: an untrained model's grasps collide (filtering: test_infer_postprocess)
    out = planner.plan(pts, num_grasps=12, steps=2, seed=3, up=np.array([0.0, 0.0, 1.0]),
                       filter=False, oversample=1)  # fmt: skip
    assert out.palm_pose.shape == (1, 12, 4, 4) and out.anchors.shape == (1, 12, 3)
    nearest = np.linalg.norm(pts[None] - out.anchors[0].numpy()[:, None].astype(np.float64), axis=-1).argmin(axis=1)
    assert is_box[nearest].all(), "anchors are drawn on the object, in the input frame"
    # without a given up, the planner estimates it from the table
    again = planner.plan(pts, num_grasps=12, steps=2, seed=3, filter=False, oversample=1)

    def by_x(a):  # the same anchors; their rank may differ (the table term uses the estimated plane)
        return a[0][a[0, :, 0].argsort()]

    assert torch.allclose(by_x(again.anchors), by_x(out.anchors), atol=1e-4)


def test_anchor_labels_mark_points_where_a_grasp_of_that_object_would_be_anchored():
    pts, is_box = _tabletop()
    obj = np.where(is_box, 7, -1)
    top = np.flatnonzero(is_box & (pts[:, 2] > -0.445))  # the cube's top face region
    low = np.flatnonzero(is_box & (pts[:, 2] < -0.495))  # its bottom edge
    table = np.flatnonzero(~is_box)[:5]
    centres = np.array([[0.05, 0.0, -0.43]])  # one grasp from above the cube
    box_idx = np.flatnonzero(is_box)
    spot = box_idx[np.linalg.norm(pts[box_idx] - centres[0], axis=1).argmin()]  # where it anchors
    cand = np.concatenate([[spot], top[:4], low[:5], table])
    labels = anchor_labels(pts, obj, cand, centres, np.array([7]))
    assert labels.dtype == np.float32 and labels.shape == (15,)
    assert labels[0] == 1.0, "the anchor point itself is positive"
    expected = (np.linalg.norm(pts[cand[:5]] - pts[spot], axis=1) <= 0.02).astype(np.float32)
    assert np.array_equal(labels[:5], expected)
    assert labels[5:10].sum() == 0, "the far side of the object is not where the grasp anchors"
    assert labels[10:].sum() == 0, "table points are never positive"
    other = anchor_labels(pts, obj, cand, centres, np.array([3]))  # a grasp of an object out of view
    assert other.sum() == 0


def test_pick_scored_prefers_high_scores_and_is_seeded():
    pool = torch.arange(40, dtype=torch.float32).reshape(1, 40, 1).expand(1, 40, 3).contiguous()
    logits = torch.full((1, 40), -10.0)
    logits[0, 30:] = 10.0
    g = torch.Generator().manual_seed(0)
    kept = pick_scored(pool, logits, 10, generator=g)
    assert sorted(kept[0, :, 0].tolist()) == list(range(30, 40))
    a = pick_scored(pool, torch.zeros(1, 40), 10, generator=torch.Generator().manual_seed(1))
    b = pick_scored(pool, torch.zeros(1, 40), 10, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and len(set(a[0, :, 0].tolist())) == 10, "seeded, without replacement"
    with pytest.raises(ValueError, match="at least"):
        pick_scored(pool, logits, 41)


def test_anchor_score_learns_the_labels_and_the_planner_keeps_the_best():
    torch.manual_seed(0)
    model = build_generator("tiny", anchor="seed", anchor_score_weight=1.0)
    pts, is_box = _tabletop(n_table=300, n_box=100)
    cloud = torch.tensor(pts, dtype=torch.float32)[None].repeat(2, 1, 1)
    cand_idx = torch.randperm(400)[:32]
    cands = cloud[:, cand_idx]
    labels = torch.tensor(is_box[cand_idx.numpy()], dtype=torch.float32)[None].repeat(2, 1)  # "grasp the cube"
    x0 = torch.rand(2, 4, 25) * 2 - 1
    anchors = cloud[:, torch.tensor(np.flatnonzero(is_box)[:4])]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(60):
        out = model.training_loss(cloud, x0, torch.Generator().manual_seed(step), anchors=anchors,
                                  candidates=cands, candidate_labels=labels)  # fmt: skip
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    assert float(out["anchor_bce"]) < 0.3, out["anchor_bce"]
    with pytest.raises(ValueError, match="candidate_labels"):
        model.training_loss(cloud, x0, anchors=anchors, candidates=cands, candidate_labels=labels[:, :3])
    model.eval()
    scores = model.score_anchors(cloud, cloud)[0]  # every point scored
    assert scores[torch.tensor(is_box)].mean() > scores[~torch.tensor(is_box)].mean() + 2
    normalizer = fit_normalizer(
        GraspSceneDataset(ShardDataset(SAMPLE), [0], num_points=128, num_grasps=4, augment=None), 1, anchored=True
    )
    planner = GraspPlanner(model, normalizer, anchor_pool=4)
    with pytest.raises(ValueError, match="anchor_pool"):
        GraspPlanner(model, normalizer, anchor_pool=0)
    out = planner.sample_network(cloud[:1], 8, steps=2, seed=0, up=torch.tensor([0.0, 0.0, 1.0]))
    assert out.anchors.shape == (1, 8, 3) and (out.anchors[..., 2] > -0.495).all()


def test_training_items_carry_labelled_anchor_candidates():
    source = ShardDataset(SAMPLE)
    ds = GraspSceneDataset(source, usable_indices(source)[:2], num_points=1024, num_grasps=16, augment=None)
    item = ds[0]
    assert item["candidates"].shape == (16, 3) and item["candidate_labels"].shape == (16,)
    d = (item["candidates"][:, None] - item["points"][None]).norm(dim=-1).min(dim=1).values
    assert d.max() < 1e-6, "candidates are input points"
    lab = item["candidate_labels"]
    assert set(lab.unique().tolist()) <= {0.0, 1.0}
    # positives lie near an anchor of the view's grasps
    if lab.sum() > 0:
        pos = item["candidates"][lab > 0]
        assert (pos[:, None] - item["anchors"][None]).norm(dim=-1).min(dim=1).values.median() < 0.1


def test_planner_uses_the_anchor_score_only_when_the_model_trained_one():
    from sceneleap_core.hand import GraspNormalizer

    hand = HandModel.load()
    n = GraspNormalizer.from_hand_limits(hand.joint_lower, hand.joint_upper)
    assert GraspPlanner(build_generator("tiny", anchor="seed"), n, hand).anchor_pool == 4
    assert GraspPlanner(build_generator("tiny", anchor="seed", anchor_score_weight=0.0), n, hand).anchor_pool == 1
    assert (
        GraspPlanner(
            build_generator("tiny", anchor="seed", anchor_score_weight=0.0), n, hand, anchor_pool=3
        ).anchor_pool
        == 3
    )


def test_planner_encodes_the_cloud_once_for_the_anchor_score_and_the_sampler():
    from sceneleap_core.hand import GraspNormalizer

    torch.manual_seed(0)
    hand = HandModel.load()
    n = GraspNormalizer.from_hand_limits(hand.joint_lower, hand.joint_upper)
    model = build_generator("tiny", anchor="seed", anchor_region_knn=8, anchor_scene=True).eval()
    calls = []
    model.encoder.register_forward_hook(lambda *_: calls.append(1))
    planner = GraspPlanner(model, n, hand, num_points=256, frame="gravity")
    pts = torch.rand(1, 256, 3) * torch.tensor([0.4, 0.4, 0.1])
    net = planner.sample_network(pts, 4, steps=2, sampler="ddim", seed=1, up=torch.tensor([0.0, 0.0, 1.0]))
    assert len(calls) == 1, "the anchor score and the sampler share one encoder pass"
    assert net.vectors.shape == (1, 4, 25)
    # the shared pass gives the scores a separate encoding gives
    assert torch.allclose(net.terms["anchor_logit"], model.score_anchors(pts, net.anchors), atol=1e-5)


def test_support_height_at_a_fixed_bin_count_equals_the_bins_sized_to_the_cloud():
    def sized(heights, bin_size=0.005):  # the lower half's bins counted at their data-dependent number
        low, mid = heights.quantile(torch.tensor([0.02, 0.5], dtype=heights.dtype), dim=1, keepdim=True)
        nbins = int(((mid - low) / bin_size).max().ceil()) + 2
        idx = ((heights - low) / bin_size).floor().clamp(0, nbins - 1).long()
        counts = torch.zeros(heights.shape[0], nbins).scatter_add_(1, idx, torch.ones_like(heights))
        counts[:, -1] = 0
        return low[:, 0] + (counts.argmax(1).to(heights.dtype) + 0.5) * bin_size

    g = torch.Generator().manual_seed(0)
    for spread in (0.05, 0.3, 1.0):
        table = torch.rand(8, 1, generator=g) - 0.5 + 0.001 * torch.randn(8, 600, generator=g)
        clutter = table[:, :1] + spread * torch.rand(8, 400, generator=g)
        heights = torch.cat([table, clutter], 1)
        assert torch.allclose(support_height(heights), sized(heights)), spread


def test_the_scored_pool_features_feed_the_scene_cache_as_encoding_the_kept_anchors_would():
    """The planner scores a pool of anchors and keeps G: the kept anchors' encoder features come from
    the pool's (``score_anchors(return_features=True)`` -> ``sample(anchor_features=)``) instead of a
    second encoding, and the grasps are those of encoding them again; the graphed backend's calls
    (run eagerly off CUDA) agree; a mismatched feature batch is named."""
    from sceneleap_core.hand import GraspNormalizer
    from sceneleap_core.models.generator import GraspGenerator

    hand = HandModel.load()
    n = GraspNormalizer.from_hand_limits(hand.joint_lower, hand.joint_upper, translation_range=0.1)
    torch.manual_seed(0)
    model = build_generator("tiny", anchor="seed").eval()
    cloud = torch.rand(1, 256, 3) - 0.5
    with torch.no_grad():
        logits, feats = model.score_anchors(cloud, cloud[:, :12], return_features=True)
        assert torch.equal(logits, model.score_anchors(cloud, cloud[:, :12])) and feats.shape[:2] == (1, 12)
        again = model.anchor_encoder(cloud, cloud[:, [3, 7]], None, model.encoder(cloud, deterministic=True))
        torch.testing.assert_close(feats[:, [3, 7]], again, atol=1e-5, rtol=1e-5)  # each anchor's own feature
    up = torch.tensor([0.0, 0.0, 1.0])
    ways, calls = {}, []
    hook = model.anchor_encoder.register_forward_hook(lambda module, args, out: calls.append(args[1].shape[1]))
    for backend in ("eager", "cuda_graph"):
        planner = GraspPlanner(model, n, hand, anchor_pool=4, backend=backend)
        ways[backend] = planner.sample_network(cloud, 6, steps=3, seed=1, up=up).vectors
    hook.remove()
    assert calls == [24, 24], "one encoding per plan: the pool of 4 x 6 anchors, none of the kept 6"
    encoded = GraspGenerator._cache

    def encode_again(self, points, tokens, xyz, drop, anchors, anchor_features=None):
        return encoded(self, points, tokens, xyz, drop, anchors)  # the features passed in are ignored

    import unittest.mock

    with unittest.mock.patch.object(GraspGenerator, "_cache", encode_again):
        reference = GraspPlanner(model, n, hand, anchor_pool=4).sample_network(cloud, 6, steps=3, seed=1, up=up).vectors
    for backend, vectors in ways.items():
        torch.testing.assert_close(vectors, reference, atol=1e-5, rtol=1e-5, msg=backend)
    with pytest.raises(ValueError, match="anchor_features"):
        model.sample(cloud, steps=1, anchors=cloud[:, :4], anchor_features=feats[:, :3])
