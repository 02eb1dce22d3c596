"""The denoising loop: scheduler + denoiser + classifier-free guidance.

The loop is the only place where a model and a scheduler meet (schedulers never call models).
Shapes: B batch, G grasps, D grasp width, Din denoiser input width (= D, or Z for the CVAE).
"""

from __future__ import annotations

import torch
from torch import nn

from sceneleap_core.models.denoisers import SceneCache


def cfg_combine(cond_out: torch.Tensor, uncond_out: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022): ``u + w (c - u)``; w = 1 is the conditional
    prediction, w = 0 the unconditional one."""
    return uncond_out + guidance_scale * (cond_out - uncond_out)


class DenoisingLoop:
    """Runs a scheduler's reverse process with a denoiser, optionally guided.

    Args:
        denoiser: a :class:`GraspDiT` / :class:`GraspUNet` (``denoiser(x, t, cache)``).
        objective: supplies ``model_time`` and ``initial_noise``.
        scheduler: a configured scheduler (``set_timesteps`` / ``step``), or None for one-shot
            decoding (CVAE: one network call at model time 0).
        guidance_scale: w; 1 skips the unconditional branch entirely.
        batched_guidance: run the conditional and unconditional branches as one 2B batch.
    """

    def __init__(
        self,
        denoiser: nn.Module,
        objective: nn.Module,
        scheduler,
        *,
        guidance_scale: float = 1.0,
        batched_guidance: bool = True,
    ):
        self.denoiser, self.objective, self.scheduler = denoiser, objective, scheduler
        self.guidance_scale, self.batched_guidance = float(guidance_scale), batched_guidance

    @property
    def guided(self) -> bool:
        return self.guidance_scale != 1.0

    def predict(
        self,
        x: torch.Tensor,
        t_model: torch.Tensor,
        cache: SceneCache,
        both: SceneCache | None,
        null: SceneCache | None,
    ):
        """One (guided) network evaluation: x (B, G, Din), t_model () -> (B, G, D)."""
        if not self.guided:
            return self.denoiser(x, t_model, cache)
        if self.batched_guidance:
            cond_out, uncond_out = self.denoiser(torch.cat([x, x]), t_model, both).chunk(2)
        else:
            cond_out, uncond_out = self.denoiser(x, t_model, cache), self.denoiser(x, t_model, null)
        return cfg_combine(cond_out, uncond_out, self.guidance_scale)

    @torch.no_grad()
    def __call__(
        self,
        cache: SceneCache,
        x_init: torch.Tensor,
        *,
        num_inference_steps: int = 10,
        null_cache: SceneCache | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sample grasps.

        Args:
            cache: conditional scene cache (B scenes).
            x_init: (B, G, Din) initial noise (or CVAE latents).
            num_inference_steps: n (scheduler steps; Heun uses 2 evaluations per step).
            null_cache: unconditional cache (``precompute_scene(..., drop=True)``), needed when guided.
            generator: randomness of stochastic schedulers.

        Returns:
            (B, G, D) normalized grasps.
        """
        if self.scheduler is not None:  # 1. timesteps on the device of the samples
            self.scheduler.set_timesteps(num_inference_steps, x_init.device)
        # 2. the reverse process over them (CVAE: one decoding call)
        return self.reverse(cache, x_init, null_cache=null_cache, generator=generator)

    @torch.no_grad()
    def reverse(
        self,
        cache: SceneCache,
        x_init: torch.Tensor,
        *,
        null_cache: SceneCache | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The reverse process over the scheduler's timesteps as already set (``set_timesteps``),
        from its first step (``reset``): no host-device copy, so it can be captured as a CUDA graph
        (:class:`sceneleap_core.infer.cuda_graph.GraphedLoop`). Arguments as :meth:`__call__`."""
        if self.guided and null_cache is None:
            raise ValueError(
                f"null_cache: expected the unconditional scene cache for guidance_scale={self.guidance_scale}, got None"
            )
        both = cache.cat(null_cache) if self.guided and self.batched_guidance else None
        if self.scheduler is None:
            t0 = self.objective.model_time(torch.zeros((), device=x_init.device))
            return self.predict(x_init, t0, cache, both, null_cache)
        if self.scheduler.timesteps is None:
            raise ValueError("reverse: expected the scheduler's set_timesteps(n, device) to be called first")
        self.scheduler.reset()
        x = x_init
        # network at (x_t, t), then the scheduler's update
        for t in self.scheduler.timesteps:
            out = self.predict(x, self.objective.model_time(t), cache, both, null_cache)
            x = self.scheduler.step(out, t, x, generator=generator).prev_sample
        return x
