"""The learned grasp critic: palm-frame patches, learning what scalar terms cannot see, its files,
and the planner ranking by it."""

import math

import numpy as np
import pytest
import torch
from _infer_common import hand, save_tiny, tabletop, tiny_planner

from sceneleap_core.infer.critic import CRITIC_NAME, GraspCritic, local_patches
from sceneleap_core.infer.planner import GraspPlanner
from sceneleap_core.infer.ranker import roc_auc

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _pose(yaw: float, t) -> torch.Tensor:
    p = torch.eye(4, dtype=torch.float64)
    c, s = math.cos(yaw), math.sin(yaw)
    p[:2, :2] = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    p[:3, 3] = torch.tensor(t, dtype=torch.float64)
    return p


def test_local_patches_are_the_nearest_points_in_the_palm_frame():
    pose = _pose(math.pi / 2, [1.0, 2.0, 0.5])[None]  # palm x axis = world y
    near = torch.tensor(
        [[1.0, 2.05, 0.5], [0.98, 2.0, 0.5]], dtype=torch.float64
    )  # 5 cm along palm x, 2 cm along palm y
    far = torch.tensor([[1.0, 2.0, 0.9]], dtype=torch.float64)  # 40 cm away
    cloud = torch.cat([far, near])
    patch = local_patches(cloud, pose, pose[:, :3, 3], k=4, radius=0.1)
    assert patch.shape == (1, 4, 4)
    np.testing.assert_allclose(patch[0, 0].numpy(), [0.0, 0.2, 0.0, 1.0], atol=1e-9)  # nearest: (0, 0.02, 0) / 0.1
    np.testing.assert_allclose(patch[0, 1].numpy(), [0.5, 0.0, 0.0, 1.0], atol=1e-9)
    np.testing.assert_allclose(patch[0, 2].numpy(), [0.0, 0.0, 0.0, 0.0])  # beyond the radius: zeroed, invalid
    np.testing.assert_allclose(patch[0, 3].numpy(), patch[0, 0].numpy())  # fewer points than k: the nearest repeats
    assert local_patches(cloud, pose[:0], pose[:0, :3, 3], k=4, radius=0.1).shape == (0, 4, 4)


def _blob_task(n: int, seed: int):
    """Grasps at random yaws around a blob of points; a grasp "lifts" when the blob lies ahead of
    its palm (+x of the palm frame), which no rotation-blind scalar can tell."""
    g = torch.Generator().manual_seed(seed)
    blob = 0.01 * torch.randn(40, 3, generator=g)
    table = torch.cat([0.3 * torch.rand(200, 2, generator=g) - 0.15, torch.full((200, 1), -0.05)], 1)
    cloud = torch.cat([blob, table]).double()
    yaw = 2 * math.pi * torch.rand(n, generator=g)
    offset = 0.06 * torch.stack([-torch.cos(yaw), -torch.sin(yaw), torch.zeros(n)], 1)  # palm 6 cm behind the blob
    flip = torch.rand(n, generator=g) < 0.5  # half face away from it
    yaw = torch.where(flip, yaw + math.pi, yaw)
    pose = torch.stack([_pose(float(a), o.tolist()) for a, o in zip(yaw, offset)])
    return cloud, pose, (~flip).float()


def test_the_critic_learns_what_the_points_under_the_hand_show(tmp_path):
    torch.manual_seed(0)
    critic = GraspCritic(16, ["noise"], k=32, radius=0.12, width=32).double()
    cloud, pose, label = _blob_task(256, seed=0)
    joints = torch.zeros(len(pose), 16, dtype=torch.float64)
    up = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    terms = {"noise": torch.randn(len(pose), dtype=torch.float64)}
    patch, up_palm, x = critic.inputs(cloud, pose, pose[:, :3, 3], up, terms)
    opt = torch.optim.Adam(critic.parameters(), lr=3e-3)
    for _ in range(150):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(critic(patch, joints, up_palm, x), label.double())
        opt.zero_grad()
        loss.backward()
        opt.step()
    test_cloud, test_pose, test_label = _blob_task(128, seed=1)
    t_patch, t_up, t_x = critic.inputs(test_cloud, test_pose, test_pose[:, :3, 3], up,
                                       {"noise": torch.randn(128, dtype=torch.float64)})  # fmt: skip
    with torch.no_grad():
        logits = critic(t_patch, joints[:128], t_up, t_x)
    assert roc_auc(logits.numpy(), test_label.numpy().astype(bool)) > 0.9
    # the files round-trip to the same logits; a broken directory is named
    critic.float().save(tmp_path)
    again = GraspCritic.load(tmp_path)
    with torch.no_grad():
        a = critic(t_patch.float(), joints[:128].float(), t_up.float(), t_x.float())
        b = again(t_patch.float(), joints[:128].float(), t_up.float(), t_x.float())
    torch.testing.assert_close(a, b)
    (tmp_path / CRITIC_NAME).write_text("{}")
    with pytest.raises(ValueError, match="not a grasp critic"):
        GraspCritic.load(tmp_path)
    with pytest.raises(ValueError, match=r"critic: the planner gave no \['noise'\]"):
        again.inputs(cloud.float(), pose.float(), pose[:, :3, 3].float(), up.float(), {})


class _SpyCritic(GraspCritic):
    """Ranks by palm height and records what the planner passed."""

    def score_grasps(self, **kw):
        self.seen = kw
        return kw["terms"]["palm_height"].float()


def test_the_planner_ranks_by_a_critic_and_prefers_it_in_the_model_directory(tmp_path):
    pts, _ = tabletop(n_table=800, n_box=300)
    args = {"num_grasps": 6, "steps": 2, "seed": 5, "oversample": 1, "filter": False, "diversity": 0}
    spy = _SpyCritic(hand().dof, ["palm_height"])
    planned = tiny_planner(ranker=spy).plan(pts, **args, up=np.array([0.0, 0.0, 1.0]))
    seen = spy.seen
    c = len(seen["pose"])
    assert seen["pose"].shape == (c, 4, 4) and seen["joints"].shape == (c, 16) and seen["cloud"].shape[1] == 3
    torch.testing.assert_close(seen["up"].float(), torch.tensor([0.0, 0.0, 1.0]))
    height = planned.terms["palm_height"][0]
    assert planned.score_kind == "ranker" and torch.all(height[:-1] >= height[1:])
    directory = save_tiny(tmp_path / "model")
    GraspCritic(hand().dof, ["palm_height"], k=16, width=8).save(directory)
    planner = GraspPlanner.from_pretrained(directory)
    assert isinstance(planner.ranker, GraspCritic)
    out = planner.plan(pts, **args)
    assert out.score_kind == "ranker" and torch.isfinite(out.scores).all()
    assert torch.all(out.scores[0][:-1] >= out.scores[0][1:] - 1e-6), "best logit first (no diversity)"
