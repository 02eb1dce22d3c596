"""Training objectives sharing one interface: DDPM, flow matching (rectified flow), CVAE.

An objective turns clean grasp sets into a network input and a regression target, scores the
network's output, and names the schedulers that can sample it. It never runs the network:

    batch = objective.prepare(x0, cond, generator)       # x_in (B, G, Din), t (B,) model time, target
    out = denoiser(batch.x_in, batch.t, cache, mask)    # (B, G, Dout)
    terms = objective.loss(out, batch, mask)            # {"loss", "pred_x0", ...}; mask (B, G) or None

Model time is always on the [0, 1000] scale the denoisers' timestep embedding expects.
Shapes: B batch, G grasps, D grasp width (25), Z latent width (CVAE).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from sceneleap_core.models.noise import (
    PREDICTION_TYPES,
    add_noise,
    flow_interpolate,
    flow_velocity,
    flow_x0,
    prediction_target,
    x0_from_prediction,
)
from sceneleap_core.models.schedulers import DIFFUSION_SAMPLERS, FLOW_SAMPLERS, SCHEDULERS, make_alphas_cumprod


@dataclass
class ObjectiveBatch:
    """What ``prepare`` produced for one training step.

    Attributes:
        x0: (B, G, D) clean grasps.  x_in: (B, G, Din) network input.
        t: (B,) model time in [0, 1000].  target: (B, G, Dout) regression target.
        extras: objective-specific tensors (noise, integer t, posterior moments).
    """

    x0: torch.Tensor
    x_in: torch.Tensor
    t: torch.Tensor
    target: torch.Tensor
    extras: dict = field(default_factory=dict)


def masked_mse(
    out: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean squared error over (B, G, D); with a (B, G) mask, averaged over the real grasps only;
    ``weight`` (D,) scales each dimension's squared error."""
    sq = (out.float() - target.float()).square()
    return _masked_mean(sq if weight is None else sq * weight.float(), mask)


def weighted_mse(
    out: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None, weight: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, mse) of :func:`masked_mse` from one squared error: ``loss`` with the per-dimension
    ``weight`` (D,) if given (else the mse itself), ``mse`` unweighted (what the logs compare)."""
    sq = (out.float() - target.float()).square()
    mse = _masked_mean(sq, mask)
    return (mse if weight is None else _masked_mean(sq * weight.float(), mask)), mse


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of (B, G, ...) values over everything, or over the real grasps of a (B, G) mask."""
    per = values.flatten(2).mean(-1)  # (B, G)
    if mask is None:
        return per.mean()
    w = mask.to(per.dtype)
    return (per * w).sum() / w.sum().clamp_min(1.0)


def _randn(shape, like: torch.Tensor, generator):
    return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)


def _finite_nonnegative(value, name: str) -> float:
    """``value`` as a float; ValueError naming ``name`` unless a finite number >= 0."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number >= 0, got {value!r}") from None
    if not (0.0 <= x < float("inf")):
        raise ValueError(f"{name}: expected a finite value >= 0, got {value!r}")
    return x


def check_temperature(temperature) -> float:
    """The sampler temperature as a float; ValueError unless a finite number >= 0."""
    return _finite_nonnegative(temperature, "temperature")


def check_guidance(scale) -> float:
    """A classifier-free guidance scale as a float; ValueError unless a finite number >= 0."""
    return _finite_nonnegative(scale, "guidance")


def initial_noise(objective, shape, like: torch.Tensor, generator=None, temperature: float = 1.0) -> torch.Tensor:
    """The sampler's starting point (shape, e.g. (B, G, D)) of ``objective`` scaled by ``temperature``:
    1 draws from the prior the model was trained from; below 1 the reverse process starts nearer
    the prior's centre and lands nearer the modes of the learned distribution (sharper, less
    diverse samples; 0 = one grasp per condition). For DDIM / DPM-Solver++ / the flow ODE the
    whole trajectory follows from it; DDPM still adds its per-step noise at full scale."""
    t = check_temperature(temperature)
    x = objective.initial_noise(shape, like, generator)
    return x if t == 1.0 else x * t


class DiffusionObjective(nn.Module):
    """DDPM (Ho et al. 2020) with eps, x0 or v targets, linear or cosine schedule.

    Recipe of ``prepare``: t ~ U{0..T-1}; eps ~ N(0, I); x_t = alpha_t x_0 + sigma_t eps;
    target = eps | x_0 | v = alpha_t eps - sigma_t x_0. ``loss`` = MSE(out, target) and returns
    the implied x_0 estimate and ``signal`` = abar_t (B,), the share of x_t's variance that is
    signal (auxiliary losses on the x_0 estimate weight by it).

    Args:
        num_train_timesteps: T.  schedule: ``linear`` / ``cosine``.  prediction: ``eps`` / ``x0`` / ``v``.
        clip_x0: clip the x_0 estimate to [-1, 1] when sampling.
    """

    samplers = DIFFUSION_SAMPLERS
    default_sampler = "dpmpp"  # DPM-Solver++(2M): the few-step sampler that keeps quality (bench/RESULTS.md)

    def __init__(
        self, num_train_timesteps: int = 100, schedule: str = "cosine", prediction: str = "eps", clip_x0: bool = True
    ):
        super().__init__()
        if prediction not in PREDICTION_TYPES:
            raise ValueError(f"prediction: expected one of {PREDICTION_TYPES}, got {prediction!r}")
        self.num_train_timesteps, self.schedule, self.prediction, self.clip_x0 = (
            num_train_timesteps, schedule, prediction, clip_x0,
        )  # fmt: skip
        abar = make_alphas_cumprod(schedule, num_train_timesteps).float()
        self.register_buffer("sqrt_abar", abar.sqrt(), persistent=False)
        self.register_buffer("sqrt_one_minus_abar", (1 - abar).sqrt(), persistent=False)

    def model_time(self, t: torch.Tensor) -> torch.Tensor:
        """Integer t (B,) or () -> float model time on the [0, 1000] scale."""
        return t.float() * (1000.0 / self.num_train_timesteps)

    def prepare(self, x0: torch.Tensor, cond: torch.Tensor | None = None, generator=None) -> ObjectiveBatch:
        b = x0.shape[0]
        t = torch.randint(0, self.num_train_timesteps, (b,), generator=generator, device=x0.device)
        eps = _randn(x0.shape, x0, generator)
        a = self.sqrt_abar[t].to(x0.dtype)[:, None, None]  # (B, 1, 1)
        s = self.sqrt_one_minus_abar[t].to(x0.dtype)[:, None, None]  # (B, 1, 1)
        x_t = add_noise(x0, eps, a, s)
        target = prediction_target(self.prediction, x0, eps, a, s)
        return ObjectiveBatch(
            x0, x_t, self.model_time(t), target, {"noise": eps, "timesteps": t, "alpha": a, "sigma": s}
        )

    def pred_x0(self, out: torch.Tensor, batch: ObjectiveBatch) -> torch.Tensor:
        a, s, x_t = batch.extras["alpha"], batch.extras["sigma"], batch.x_in
        if self.prediction == "eps":
            a = a.clamp_min(1e-4)  # the eps inversion divides by alpha, ~0 at the last timesteps
        return x0_from_prediction(self.prediction, out, x_t, a, s)

    def loss(
        self,
        out: torch.Tensor,
        batch: ObjectiveBatch,
        mask: torch.Tensor | None = None,
        weight: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """``loss``: the MSE with per-dimension ``weight`` (D,) if given; ``mse``: unweighted."""
        loss, mse = weighted_mse(out, batch.target, mask, weight)
        signal = batch.extras["alpha"].flatten().float().square()  # abar_t (B,)
        return {"loss": loss, "mse": mse.detach(), "pred_x0": self.pred_x0(out, batch), "signal": signal}

    def make_scheduler(self, name: str, *, eta: float = 0.0):
        """Scheduler ``name`` in ``samplers`` configured with this objective's schedule."""
        if name not in self.samplers:
            raise ValueError(f"sampler: expected one of {self.samplers} for a diffusion objective, got {name!r}")
        kwargs = {"eta": eta} if name == "ddim" else {}
        return SCHEDULERS[name](
            num_train_timesteps=self.num_train_timesteps,
            beta_schedule=self.schedule,
            prediction_type=self.prediction,
            clip_sample=self.clip_x0,
            **kwargs,
        )

    def initial_noise(self, shape, like: torch.Tensor, generator=None) -> torch.Tensor:
        return _randn(shape, like, generator)


class FlowMatchingObjective(nn.Module):
    """Rectified flow / conditional flow matching (Liu et al. 2023; Lipman et al. 2023).

    Recipe of ``prepare``: t ~ U(0, 1) (or logit-normal); eps ~ N(0, I); x_t = (1 - t) x_0 + t eps;
    target v = eps - x_0. Model time = 1000 t. x_0 estimate = x_t - t v.

    Args:
        time_sampling: ``uniform`` or ``logit_normal`` (SD3; concentrates on mid t).
        shift: timestep shift applied by the samplers.
    """

    samplers = FLOW_SAMPLERS
    default_sampler = "euler"

    def __init__(self, time_sampling: str = "uniform", shift: float = 1.0):
        super().__init__()
        if time_sampling not in ("uniform", "logit_normal"):
            raise ValueError(f"time_sampling: expected 'uniform' or 'logit_normal', got {time_sampling!r}")
        self.time_sampling, self.shift = time_sampling, shift

    def model_time(self, t: torch.Tensor) -> torch.Tensor:
        return t.float() * 1000.0

    def prepare(self, x0: torch.Tensor, cond: torch.Tensor | None = None, generator=None) -> ObjectiveBatch:
        b = x0.shape[0]
        if self.time_sampling == "uniform":
            t = torch.rand(b, generator=generator, device=x0.device)
        else:
            t = torch.sigmoid(torch.randn(b, generator=generator, device=x0.device))
        eps = _randn(x0.shape, x0, generator)
        tt = t.to(x0.dtype)[:, None, None]  # (B, 1, 1)
        x_t = flow_interpolate(x0, eps, tt)
        return ObjectiveBatch(x0, x_t, self.model_time(t), flow_velocity(x0, eps), {"noise": eps, "t": tt})

    def loss(
        self,
        out: torch.Tensor,
        batch: ObjectiveBatch,
        mask: torch.Tensor | None = None,
        weight: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """``loss``: the MSE with per-dimension ``weight`` (D,) if given; ``mse``: unweighted."""
        loss, mse = weighted_mse(out, batch.target, mask, weight)
        t = batch.extras["t"].flatten().float()
        signal = (1 - t).square() / ((1 - t).square() + t.square())  # the signal's share of x_t's variance (B,)
        return {
            "loss": loss,
            "mse": mse.detach(),
            "pred_x0": flow_x0(batch.x_in, out, batch.extras["t"]),
            "signal": signal,
        }

    def make_scheduler(self, name: str, *, eta: float = 0.0):
        if name not in self.samplers:
            raise ValueError(f"sampler: expected one of {self.samplers} for a flow objective, got {name!r}")
        return SCHEDULERS[name](shift=self.shift)

    def initial_noise(self, shape, like: torch.Tensor, generator=None) -> torch.Tensor:
        return _randn(shape, like, generator)


class CVAEObjective(nn.Module):
    """Conditional VAE baseline (Sohn et al. 2015) on the same denoiser network as decoder.

    The posterior q(z | x_0, scene) is a small MLP per grasp on [x_0 | global scene vector];
    the decoder is the denoiser run once at model time 0 on z (B, G, Z) tokens; the prior is
    N(0, I). ``loss`` = MSE(x_0_hat, x_0) + kl_weight * KL(q || N(0, I)) (per dimension mean).
    Sampling draws z from the prior and decodes once (``steps`` are ignored).

    Args:
        grasp_dim: D.  latent_dim: Z.  cond_dim: width of the global scene vector.
        hidden: posterior MLP width.  kl_weight: beta.
    """

    samplers = ("cvae",)
    default_sampler = "cvae"

    def __init__(
        self, grasp_dim: int = 25, latent_dim: int = 16, cond_dim: int = 384, hidden: int = 256, kl_weight: float = 1e-2
    ):
        super().__init__()
        self.latent_dim, self.kl_weight = latent_dim, kl_weight
        self.posterior = nn.Sequential(
            nn.Linear(grasp_dim + cond_dim, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, 2 * latent_dim),
        )

    def model_time(self, t: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(t, dtype=torch.float32)

    def prepare(self, x0: torch.Tensor, cond: torch.Tensor | None = None, generator=None) -> ObjectiveBatch:
        if cond is None:
            raise ValueError("CVAEObjective.prepare: expected the global scene vector cond (B, D_cond), got None")
        b, g, _ = x0.shape
        h = torch.cat([x0, cond[:, None, :].expand(-1, g, -1).to(x0.dtype)], dim=-1)  # (B, G, D + D_cond)
        mu, logvar = self.posterior(h).chunk(2, dim=-1)  # (B, G, Z) each
        logvar = logvar.clamp(-10.0, 10.0)
        z = mu + (0.5 * logvar).exp() * _randn(mu.shape, mu, generator)
        t = torch.zeros(b, device=x0.device)
        return ObjectiveBatch(x0, z, t, x0, {"mu": mu, "logvar": logvar})

    def loss(
        self,
        out: torch.Tensor,
        batch: ObjectiveBatch,
        mask: torch.Tensor | None = None,
        weight: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        mu, logvar = batch.extras["mu"], batch.extras["logvar"]
        rec = masked_mse(out, batch.target, mask, weight)
        kl_per = (-0.5 * (1 + logvar - mu.square() - logvar.exp())).float()  # (B, G, Z)
        kl = _masked_mean(kl_per, mask)
        signal = torch.ones(out.shape[0], device=out.device)  # the decoder sees no noise
        return {"loss": rec + self.kl_weight * kl, "recon": rec.detach(), "kl": kl.detach(), "pred_x0": out,
                "signal": signal}  # fmt: skip

    def make_scheduler(self, name: str, *, eta: float = 0.0):
        if name not in self.samplers:
            raise ValueError(f"sampler: expected 'cvae' for a CVAE objective, got {name!r}")
        return None

    def initial_noise(self, shape, like: torch.Tensor, generator=None) -> torch.Tensor:
        return _randn((*shape[:-1], self.latent_dim), like, generator)


OBJECTIVES = {"ddpm": DiffusionObjective, "flow": FlowMatchingObjective, "cvae": CVAEObjective}
