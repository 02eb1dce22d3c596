"""A learned grasp critic: the lift-success logit of a planned grasp from the observed points around
it, seen from the palm, beside the planner's per-grasp evidence.

The logistic ranker (:mod:`sceneleap_core.infer.ranker`) weighs ten scalar terms; it cannot see the
shape under the hand. The critic reads, per grasp, the ``k`` observed points nearest the grasp
centre (within ``radius``), expressed in the palm frame, max-pools a shared point MLP over them, and
joins that with the joint angles, world up in the palm frame and the standardized scalar terms:

    patch (G, k, 4) --point MLP--> max-pool (G, 2W) --+-- joints (G, J), up (G, 3), terms (G, F)
                                                      +--> MLP --> logit (G,)

Fit on grasps the planner returned for training scenes and lift-tested there
(``bench/ranking.py --out``), selected on a development set (``bench/critic_fit.py``). Stored as
``critic.safetensors`` (weights, no pickle) + ``critic.json`` (settings, term statistics) in the
model directory; :meth:`GraspPlanner.from_pretrained` prefers it over ``ranker.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from sceneleap_core.atomic import write_safetensors_atomic, write_text_atomic

CRITIC_NAME = "critic.json"
CRITIC_WEIGHTS = "critic.safetensors"


def local_patches(
    cloud: torch.Tensor, pose: torch.Tensor, centres: torch.Tensor, k: int, radius: float
) -> torch.Tensor:
    """Per grasp, the ``k`` cloud points nearest its centre, in its palm frame.

    Args:
        cloud: (N, 3) observed points; pose: (G, 4, 4) palm poses and centres: (G, 3) grasp
            centres, all in the cloud's frame.
        k: points per patch (fewer cloud points: the nearest repeat); radius: metres; farther
            points are zeroed and flagged invalid.

    Returns:
        (G, k, 4): palm-frame xyz / radius, then 1 for a point within ``radius`` else 0.
    """
    g = len(pose)
    if g == 0 or len(cloud) == 0:
        return torch.zeros(g, k, 4, dtype=cloud.dtype, device=cloud.device)
    dist = torch.cdist(centres.to(cloud.dtype), cloud)  # (G, N)
    kk = min(k, cloud.shape[0])
    d, idx = dist.topk(kk, dim=1, largest=False)  # (G, kk)
    if kk < k:  # pad by repeating the nearest
        pad = k - kk
        idx = torch.cat([idx, idx[:, :1].expand(-1, pad)], 1)
        d = torch.cat([d, d[:, :1].expand(-1, pad)], 1)
    pts = cloud[idx]  # (G, k, 3)
    rot, t = pose[:, :3, :3].to(cloud.dtype), pose[:, :3, 3].to(cloud.dtype)
    local = torch.einsum("gkj,gji->gki", pts - t[:, None], rot) / radius  # R^T (p - t), row-vector form
    valid = (d <= radius).to(cloud.dtype)[..., None]
    return torch.cat([local * valid, valid], -1)


class GraspCritic(nn.Module):
    """Lift-success logits of grasps from their local patches, joints, up and scalar terms.

    Args:
        dof: J, joint angles per grasp.
        features: names of the scalar terms (``GraspSet.terms``) it reads, standardized by
            ``term_mean`` / ``term_std`` (the training statistics).
        k, radius: the patch (:func:`local_patches`).
        width: W, the point MLP's width.
        info: how it was fitted and measured (stored in ``critic.json``).
    """

    def __init__(self, dof: int, features: list[str], *, k: int = 64, radius: float = 0.12, width: int = 64,
                 term_mean: list[float] | None = None, term_std: list[float] | None = None,
                 info: dict | None = None) -> None:  # fmt: skip
        super().__init__()
        self.dof, self.features, self.k, self.radius, self.width = (
            int(dof),
            list(features),
            int(k),
            float(radius),
            int(width),
        )
        self.info = dict(info or {})
        f = len(self.features)
        self.register_buffer("term_mean", torch.tensor(term_mean if term_mean is not None else [0.0] * f))
        self.register_buffer("term_std", torch.tensor(term_std if term_std is not None else [1.0] * f))
        self.point_mlp = nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, 2 * width), nn.ReLU(),
                                       nn.Linear(2 * width, 2 * width))  # fmt: skip
        self.head = nn.Sequential(nn.Linear(2 * width + self.dof + 3 + f, 2 * width), nn.ReLU(),
                                  nn.Linear(2 * width, width), nn.ReLU(), nn.Linear(width, 1))  # fmt: skip

    def forward(
        self, patch: torch.Tensor, joints: torch.Tensor, up_palm: torch.Tensor, terms: torch.Tensor
    ) -> torch.Tensor:
        """patch (G, k, 4), joints (G, J), up_palm (G, 3), terms (G, F) raw -> (G,) logits."""
        h = self.point_mlp(patch)  # (G, k, 2W)
        valid = patch[..., 3:4] > 0
        h = torch.where(valid, h, torch.full_like(h, -1e4)).amax(1)  # (G, 2W); no valid point -> -1e4
        h = torch.where(valid.any(1), h, torch.zeros_like(h))
        z = (terms - self.term_mean) / self.term_std
        return self.head(torch.cat([h, joints, up_palm, z], -1)).squeeze(-1)

    def inputs(self, cloud: torch.Tensor, pose: torch.Tensor, centres: torch.Tensor, up: torch.Tensor,
               terms: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """(patch (G, k, 4), up in each palm frame (G, 3), terms (G, F)) from a cloud (N, 3), palm poses
        (G, 4, 4), grasp centres (G, 3), world up (3,) and {name: (G,)} terms, one frame throughout."""
        missing = [f for f in self.features if f not in terms]
        if missing:
            raise ValueError(f"critic: the planner gave no {missing} (has {sorted(terms)})")
        dt = self.term_mean.dtype
        patch = local_patches(cloud.to(dt), pose.to(dt), centres.to(dt), self.k, self.radius)
        up_palm = (up.to(dt) / up.norm()) @ pose[:, :3, :3].to(dt)  # R^T up, per grasp (G, 3)
        x = (
            torch.stack([terms[n].to(dt) for n in self.features], -1)
            if self.features
            else patch.new_zeros(len(pose), 0)
        )
        return patch, up_palm, x

    @torch.no_grad()
    def score_grasps(self, *, hand, cloud: torch.Tensor, pose: torch.Tensor, joints: torch.Tensor,
                     up: torch.Tensor | None, terms: dict[str, torch.Tensor]) -> torch.Tensor:  # fmt: skip
        """The planner's call: (G,) logits of grasps ``pose`` (G, 4, 4) / ``joints`` (G, J) over
        ``cloud`` (N, 3), world ``up`` (3,) in the same frame (None: +z), with the scalar ``terms``."""
        from sceneleap_core.geometry.anchors import grasp_centres

        dev = self.term_mean.device
        if len(pose) == 0:
            return torch.zeros(0, device=pose.device)
        centres = grasp_centres(hand, pose, joints)
        up_t = torch.tensor([0.0, 0.0, 1.0]) if up is None else torch.as_tensor(up)
        patch, up_palm, x = self.inputs(cloud.to(dev), pose.to(dev), centres.to(dev), up_t.to(dev),
                                        {k: v.to(dev) for k, v in terms.items()})  # fmt: skip
        return self(patch, joints.to(dev, self.term_mean.dtype), up_palm, x).to(pose.device)

    # ------------------------------------------------------------------------------ storage
    def settings(self) -> dict:
        return {"dof": self.dof, "features": self.features, "k": self.k, "radius": self.radius, "width": self.width,
                "term_mean": self.term_mean.tolist(), "term_std": self.term_std.tolist(), "info": self.info}  # fmt: skip

    def save(self, directory: str | Path) -> Path:
        """``critic.safetensors`` + ``critic.json`` into ``directory`` (atomic each)."""
        out = Path(directory)
        write_safetensors_atomic(
            out / CRITIC_WEIGHTS, {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        )
        write_text_atomic(out / CRITIC_NAME, json.dumps(self.settings(), indent=1))
        return out

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> GraspCritic:
        """The critic stored in ``directory``; ValueError naming the file when it is missing or broken."""
        from safetensors.torch import load_file

        d = Path(directory)
        try:
            cfg = json.loads((d / CRITIC_NAME).read_text())
            critic = cls(cfg["dof"], cfg["features"], k=cfg["k"], radius=cfg["radius"], width=cfg["width"],
                         term_mean=cfg["term_mean"], term_std=cfg["term_std"], info=cfg.get("info", {}))  # fmt: skip
            critic.load_state_dict(load_file(str(d / CRITIC_WEIGHTS)))
        except (OSError, json.JSONDecodeError, KeyError, TypeError, RuntimeError) as exc:
            raise ValueError(f"{d}: not a grasp critic ({CRITIC_NAME} + {CRITIC_WEIGHTS}: {exc})") from exc
        return critic.eval().to(device)
