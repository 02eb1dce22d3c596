"""The LightningModule: diffusion loss on normalized grasp sets, EMA, optimizer and schedule,
validation by sampling.

Notation: B scenes per batch, N points, K target grasps, G sampled grasps, D = 3 + J + 6.

Randomness, for exact resume: the diffusion noise, timesteps and condition dropout of each
micro-batch come from a ``torch.Generator`` re-seeded from ``(seed, rank, global_step, micro)``,
so they depend on nothing but the step; the global torch RNG states (used e.g. by dropout
layers) are stored in the checkpoint and restored on resume (rank 0's state; on several ranks
only the generator-driven randomness is exactly reproduced).
"""

from __future__ import annotations

import inspect
import logging

import lightning as L
import numpy as np
import torch
from torch import nn

from sceneleap_core.geometry.pointops import gather_points, knn
from sceneleap_core.hand import GraspNormalizer, HandModel, anchor_relative, vector_to_pose
from sceneleap_core.infer.planner import GraspPlanner
from sceneleap_core.train.config import EMAConfig, OptimConfig, ValConfig
from sceneleap_core.train.diagnostics import conditioning_gap
from sceneleap_core.train.ema import EMA
from sceneleap_core.train.metrics import grasp_keypoints, grasp_set_chamfer, scene_penetration
from sceneleap_core.train.schedule import build_scheduler, set_time_progress

log = logging.getLogger(__name__)


def derived_seed(*parts: int) -> int:
    """A 63-bit seed from integers (SeedSequence hashing: nearby inputs give unrelated seeds)."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1, np.uint64)[0] >> 1)


def budget_fraction(trainer) -> float | None:
    """Fraction (0..1) of the trainer's wall-clock budget (``max_time``, Lightning's Timer
    callback) spent in training, or None without a budget."""
    from lightning.pytorch.callbacks import Timer

    for cb in getattr(trainer, "callbacks", []) or []:
        if isinstance(cb, Timer):
            elapsed, remaining = cb.time_elapsed("train"), cb.time_remaining("train")
            if remaining is None:
                return None
            total = elapsed + remaining
            return elapsed / total if total > 0 else 1.0
    return None


class GraspTrainingModule(L.LightningModule):
    """Trains a grasp generator (``build_generator(...)``) on batches of
    :class:`sceneleap_core.train.data.GraspSceneDataset` items.

    Args:
        model: the generator; must provide ``training_loss(points (B, N, 3), grasps (B, K, D),
            generator=...) -> {"loss": (), ...}`` and ``sample(points, num_grasps=, steps=, sampler=,
            guidance_scale=) -> (B, G, D)`` (normalized).
        normalizer: grasp normalization fitted on the training split (a sub-module: its statistics
            are buffers saved in every checkpoint).
        optim: optimizer and schedule settings.
        ema: EMA settings.
        val: validation settings.
        max_steps: optimizer steps of the run (length of the lr schedule).
        seed: base seed of the per-step generators.
        hand: hand description for the validation metrics (name or YAML path).
        evaluator: optional :class:`sceneleap_core.train.metrics.ValidationEvaluator`.
        config: plain dict of the run's config, stored in checkpoints (for reference only).
        aux_loss: optional ``GraspLossConfig``: auxiliary losses on ``pred_x0`` (hand chamfer,
            penetration into the cloud, ...), added with weight ``aux_weight``, computed in fp32.
        aux_weight: weight of the auxiliary losses (0 disables them).
    """

    TIME_SYNC_EVERY = 50  # steps between broadcasts of rank 0's wall-clock budget fraction (DDP)
    _time_fraction: float | None = None

    def __init__(
        self,
        model: nn.Module,
        normalizer: GraspNormalizer,
        *,
        optim: OptimConfig | None = None,
        ema: EMAConfig | None = None,
        val: ValConfig | None = None,
        max_steps: int = 1000,
        seed: int = 0,
        hand: str = "leap_hand_right",
        evaluator=None,
        config: dict | None = None,
        aux_loss=None,
        aux_weight: float = 0.0,
    ):
        super().__init__()
        self.model = model
        self.normalizer = normalizer
        self.optim_cfg = optim or OptimConfig()
        self.ema_cfg = ema or EMAConfig()
        self.val_cfg = val or ValConfig()
        self.max_steps, self.seed, self.hand_name = int(max_steps), int(seed), hand
        self.evaluator = evaluator
        self.config = dict(config or {})
        self.ema = EMA(model, decay=self.ema_cfg.decay, warmup=self.ema_cfg.warmup) if self.ema_cfg.enabled else None
        self._hand: list[HandModel] = []  # not a sub-module: kept out of state_dict and of DDP's buffers
        self._generator: torch.Generator | None = None
        self._gen_step, self._micro = -1, 0
        self._pending_rng: dict | None = None
        self._val_runs = 0
        self._takes_mask = "mask" in inspect.signature(model.training_loss).parameters
        self.aux_weight = float(aux_weight)
        self.aux = None
        if aux_loss is not None and self.aux_weight > 0:
            from sceneleap_core.models.losses import GraspSetLoss

            if getattr(model, "anchored", False) and aux_loss.match:
                raise ValueError("aux_loss.match: anchored grasps keep their anchors; expected match=false")

            self.aux = GraspSetLoss(HandModel.load(hand, surface_points=aux_loss.chamfer_points), normalizer, aux_loss)

    # ----------------------------------------------------------------------------- helpers
    @property
    def hand(self) -> HandModel:
        if not self._hand:
            self._hand.append(HandModel.load(self.hand_name, surface_points=256))  # metrics use boxes and tips
        if self._hand[0].device != self.device:
            self._hand[0] = self._hand[0].to(self.device)
        return self._hand[0]

    def _step_generator(self) -> torch.Generator:
        """The generator of this micro-batch, seeded from (seed, rank, global_step, micro)."""
        if self._generator is None or self._generator.device != self.device:
            self._generator = torch.Generator(device=self.device)
        if self.global_step != self._gen_step:
            self._gen_step, self._micro = self.global_step, 0
        self._generator.manual_seed(derived_seed(self.seed, self.global_rank, self.global_step, self._micro))
        self._micro += 1
        return self._generator

    @property
    def anchored(self) -> bool:
        """The generator conditions each grasp on an anchor point (``anchor="seed"``)."""
        return bool(getattr(self.model, "anchored", False))

    def network_target(self, batch: dict) -> torch.Tensor:
        """The batch's grasps as the network sees them: normalized (B, K, D), translations relative
        to the batch's anchors for anchored generators."""
        grasps = anchor_relative(batch["grasps"], batch["anchors"]) if self.anchored else batch["grasps"]
        return self.normalizer.normalize(grasps)

    def _loss(self, batch: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
        target = self.network_target(batch)  # (B, K, D)
        kwargs = {"generator": generator}
        if self._takes_mask:
            kwargs["mask"] = batch["grasp_mask"]
        if self.anchored:
            kwargs["anchors"] = batch["anchors"]
            if "candidates" in batch:
                kwargs.update(candidates=batch["candidates"], candidate_labels=batch["candidate_labels"])
        out = self.model.training_loss(batch["points"], target, **kwargs)
        if "loss" not in out:
            raise ValueError(f"model.training_loss: expected a dict with 'loss', got keys {sorted(out)}")
        if self.aux is not None:
            with torch.autocast(self.device.type, enabled=False):
                terms = self._aux_terms(batch, out, target)
            out["loss"] = out["loss"] + self.aux_weight * terms["total"]
            out.update({f"aux_{k}": v.detach() for k, v in terms.items()})
        return out

    def _aux_terms(self, batch: dict, out: dict, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """The auxiliary terms on the x0 estimate, weighted per sample by its signal share abar_t
        (the estimate from near-pure noise is a blur, not a grasp) and per grasp by the padding
        mask. Anchored grasps get their anchors back (metres, the cloud's frame) and are scored
        against the ``aux_loss.scene_points`` cloud points nearest their anchor (the hand's
        neighbourhood at full density, not a strided whole scene)."""
        points = batch["points"].float()  # (B, N, 3)
        weight = out["signal"].float() if "signal" in out else torch.ones(points.shape[0], device=points.device)
        weight = weight[:, None] * batch.get("grasp_mask", torch.ones_like(target[..., 0], dtype=torch.bool)).float()
        offsets = None
        if self.anchored:
            offsets = batch["anchors"].float()  # (B, G, 3)
            k = min(self.aux.config.scene_points, points.shape[1])
            _, idx = knn(offsets, points, k)  # (B, G, k)
            points = gather_points(points, idx)  # (B, G, k, 3)
        return self.aux(out["pred_x0"].float(), target.float(), points, offsets=offsets, weight=weight)

    @staticmethod
    def _scalars(out: dict) -> dict[str, torch.Tensor]:
        return {
            k: v.detach().float()
            for k, v in out.items()
            if k != "loss" and isinstance(v, torch.Tensor) and v.numel() == 1
        }

    # ----------------------------------------------------------------------------- training
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        out = self._loss(batch, self._step_generator())
        loss = out["loss"]
        if self.global_step % max(1, self.trainer.log_every_n_steps) == 0 and not torch.isfinite(loss.detach()):
            raise FloatingPointError(f"training loss is {loss.item()} at step {self.global_step}")
        bs = batch["points"].shape[0]
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=bs)
        for k, v in self._scalars(out).items():
            self.log(f"train/{k}", v, batch_size=bs)
        return loss

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer, optimizer_closure=None) -> None:
        """The optimizer step, then the EMA update (before any callback, so a checkpoint written at
        this step already holds this step's EMA)."""
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        if self.ema is None:
            return
        step = self.global_step + 1  # global_step counts this step only after the hook returns
        if step <= self.ema_cfg.start_step:
            self.ema.copy_from(self.model)
        elif step % self.ema_cfg.every == 0:
            self.ema.update(self.model)

    def on_fit_start(self) -> None:
        if self.ema is not None:
            self.ema.to(self.device)

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        """With ``optim.decay_by_time`` and a wall-clock budget, feed the spent fraction of it to
        the lr schedule (Lightning's Timer keeps the elapsed time across resumes). Several ranks
        take rank 0's clock, refreshed every ``TIME_SYNC_EVERY`` steps, so their learning rates,
        and with them their weights, stay identical."""
        if not getattr(self.optim_cfg, "decay_by_time", False):
            return
        trainer = self.trainer
        if trainer.world_size > 1:
            if self.global_step % self.TIME_SYNC_EVERY == 0 or self._time_fraction is None:
                self._time_fraction = trainer.strategy.broadcast(budget_fraction(trainer), src=0)
            fraction = self._time_fraction
        else:
            fraction = budget_fraction(trainer)
        if fraction is not None:
            set_time_progress(self.lr_schedulers(), fraction)

    def on_train_start(self) -> None:
        rng = self._pending_rng
        if rng is not None:
            torch.set_rng_state(rng["torch"])
            if torch.cuda.is_available() and rng.get("cuda"):
                for i, state in enumerate(rng["cuda"][: torch.cuda.device_count()]):
                    torch.cuda.set_rng_state(state, i)
            self._pending_rng = None

    def configure_optimizers(self):
        o = self.optim_cfg
        decay, no_decay = [], []
        for p in self.model.parameters():
            if p.requires_grad:
                (decay if p.dim() >= 2 else no_decay).append(p)
        groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        fused = self.device.type == "cuda" if o.fused is None else bool(o.fused)
        if self._grad_scaler_precision():
            fused = False  # fp16 + GradScaler: Lightning unscales and clips, which a fused optimizer refuses
        opt = torch.optim.AdamW(groups, lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps, fused=fused or None)
        sched = build_scheduler(
            opt, o.schedule, max_steps=self.max_steps, warmup_steps=o.warmup_steps, min_lr_ratio=o.min_lr_ratio, lr=o.lr
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}

    def _grad_scaler_precision(self) -> bool:
        trainer = getattr(self, "_trainer", None)
        return trainer is not None and str(trainer.precision).startswith("16")

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """Clip the gradient norm here rather than through Lightning's mixed-precision plugin, which
        refuses fused optimizers; bf16 and fp32 gradients are unscaled, so this is the same clip.
        fp16 (GradScaler) keeps Lightning's path, which unscales first."""
        if not gradient_clip_val:
            return
        if self._grad_scaler_precision():
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
            return
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, float(gradient_clip_val))

    def on_before_optimizer_step(self, optimizer) -> None:
        if self.global_step % max(1, self.trainer.log_every_n_steps) == 0:
            self.log("train/lr", optimizer.param_groups[0]["lr"], rank_zero_only=True)

    # ----------------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.ema is not None:
            checkpoint["ema"] = self.ema.state_dict()
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint["rng"] = rng
        checkpoint["train_config"] = self.config

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if self.ema is not None:
            if "ema" not in checkpoint:
                log.warning("checkpoint has no EMA state: the EMA restarts from the loaded weights")
            else:
                self.ema.load_state_dict(checkpoint["ema"])
        self._pending_rng = checkpoint.get("rng")

    # ----------------------------------------------------------------------------- validation
    def on_validation_start(self) -> None:
        self._val_ctx = None
        if self.ema is not None:
            self._val_ctx = self.ema.swapped_into(self.model)
            self._val_ctx.__enter__()

    def on_validation_end(self) -> None:
        if getattr(self, "_val_ctx", None) is not None:
            self._val_ctx.__exit__(None, None, None)
            self._val_ctx = None
        if not self.trainer.sanity_checking:
            self._val_runs += 1

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        v = self.val_cfg
        bs = batch["points"].shape[0]
        gen = torch.Generator(device=self.device)
        gen.manual_seed(derived_seed(self.seed, 99991, self.global_rank, batch_idx))
        out = self._loss(batch, gen)
        self.log("val/loss", out["loss"].detach().float(), sync_dist=True, batch_size=bs)
        for k, val in self._scalars(out).items():
            self.log(f"val/{k}", val, sync_dist=True, batch_size=bs)
        metrics = self.sample_metrics(batch, seed=batch_idx)
        for k, val in metrics.items():
            self.log(f"val/{k}", val, sync_dist=True, batch_size=bs, prog_bar=k == "chamfer_mm")
        if v.gap_repeats > 0:
            target = self.network_target(batch)
            mask = batch["grasp_mask"] if self._takes_mask else None
            anchors = batch["anchors"] if self.anchored else None
            gap = conditioning_gap(
                self.model, batch["points"], target, mask, seed=batch_idx, repeats=v.gap_repeats, anchors=anchors
            )
            for k, val in gap.items():
                if val == val:  # nan (one-sample batch) is not logged
                    self.log(f"val/{k}", val, sync_dist=True, batch_size=bs, prog_bar=k == "gap_blank")
        if self.evaluator is not None and batch_idx == 0 and self._val_runs % v.evaluator_every == 0:
            runs = [("", v.sampler, v.steps)]
            if v.reference_steps > 0:
                runs.append(("_ref", v.reference_sampler, v.reference_steps))
            for suffix, sampler, steps in runs:
                pose, joints = self.sample_grasps(
                    batch["points"], seed=batch_idx, sampler=sampler, steps=steps, up=batch.get("up")
                )
                for k, val in self.evaluator(batch, pose, joints).items():
                    self.log(f"val/{k}{suffix}", float(val), rank_zero_only=True, batch_size=bs,
                             prog_bar=k == "sim_lift_success" and not suffix)  # fmt: skip

    @torch.no_grad()
    def sample_grasps(
        self,
        points: torch.Tensor,
        num_grasps: int | None = None,
        *,
        seed: int = 0,
        sampler: str | None = None,
        steps: int | None = None,
        up: torch.Tensor | None = None,
        anchors: torch.Tensor | None = None,
        anchor_pool: int | None = None,
        temperature: float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample grasps for (B, N, 3) network-frame clouds -> palm poses (B, G, 4, 4), joints (B, G, J),
        through the inference path (:class:`sceneleap_core.infer.GraspPlanner`). ``sampler`` and
        ``steps`` default to the validation config; ``up`` (B, 3): world up in the network frame
        (where anchored generators draw their anchors) or ``anchors`` (B, G, 3) given (e.g. the
        ground truth's, a diagnostic); ``anchor_pool``: candidates drawn per kept anchor (None = the
        planner's default; 1 = draw uniformly; > 1 keeps the best-scored); ``temperature``: the initial
        noise's scale (None = the validation config's). Seeded by ``seed``, never the global RNG."""
        v = self.val_cfg
        kwargs = {} if anchor_pool is None else {"anchor_pool": anchor_pool}
        planner = GraspPlanner(self.model, self.normalizer, self.hand, **kwargs)
        out = planner.sample_network(
            points,
            num_grasps or v.num_grasps,
            steps=steps or v.steps,
            sampler=sampler or v.sampler,
            guidance_scale=v.guidance_scale,
            seed=derived_seed(self.seed, 424242, self.global_rank, seed),
            up=up,
            anchors=anchors,
            temperature=v.temperature if temperature is None else temperature,
        )
        return out.palm_pose, out.joints

    @torch.no_grad()
    def sample_metrics(self, batch: dict, *, seed: int = 0) -> dict[str, torch.Tensor]:
        """Sample ``val.num_grasps`` grasps per scene (fp32) and score them with :meth:`grasp_metrics`."""
        with torch.autocast(self.device.type, enabled=False):
            pose, joints = self.sample_grasps(batch["points"], seed=seed, up=batch.get("up"))
            return self.grasp_metrics(batch, pose, joints)

    @torch.no_grad()
    def grasp_metrics(self, batch: dict, pose: torch.Tensor, joints: torch.Tensor) -> dict[str, torch.Tensor]:
        """Score network-frame grasps (B, G, 4, 4), (B, G, J) of ``batch`` (in physical units):

        * ``chamfer_mm``: keypoint chamfer distance to the ground-truth set;
        * ``penetration_mm``: mean over grasps of the deepest cloud point inside the hand;
        * ``collision_free``: fraction of grasps with less than 2 mm penetration.
        """
        with torch.autocast(self.device.type, enabled=False):
            hand = self.hand
            gt_pose, gt_joints = vector_to_pose(batch["grasps"].float(), hand.dof)
            kp_pred = grasp_keypoints(hand, pose, joints)
            kp_gt = grasp_keypoints(hand, gt_pose, gt_joints)
            chamfer = grasp_set_chamfer(kp_pred, kp_gt, batch["grasp_mask"])  # (B,)
            pts = batch["points"].float()
            m = min(self.val_cfg.metric_points, pts.shape[1])
            pick = torch.randperm(pts.shape[1], generator=torch.Generator().manual_seed(0))[:m].to(pts.device)
            depth = scene_penetration(hand, pose, joints, pts[:, pick])  # (B, G)
        return {
            "chamfer_mm": 1e3 * chamfer.mean().float(),
            "penetration_mm": 1e3 * depth.mean().float(),
            "collision_free": (depth < 2e-3).float().mean(),
        }


def compile_model(model: nn.Module) -> nn.Module:
    """``torch.compile`` the generator's heavy sub-modules in place (``Module.compile`` keeps the
    state-dict keys, so checkpoints and exports are unaffected)."""
    names = [n for n in ("encoder", "denoiser") if isinstance(getattr(model, n, None), nn.Module)]
    if not names:
        model.compile()
    for n in names:
        getattr(model, n).compile()
    return model
