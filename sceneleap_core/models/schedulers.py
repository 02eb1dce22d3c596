"""Noise schedules and sampling schedulers (diffusers-style; no scheduler touches a model).

Every scheduler exposes ``set_timesteps(n, device)`` (fills ``timesteps``, the values the
denoising loop feeds the model, in the objective's native units), ``step(model_output, timestep,
sample, generator=None) -> StepOutput`` and ``add_noise(x0, noise, t)``. The denoising loop in
:mod:`sceneleap_core.models.denoising_loop` calls them in order: ``for t in scheduler.timesteps: out =
model(x, t); x = scheduler.step(out, t, x).prev_sample``. Each scheduler tracks its position
itself (a step counter; per-step coefficients are Python floats computed on the host in
``set_timesteps``), so ``step`` never reads a device tensor back: the loop has no host syncs
and can be captured in a CUDA graph.

Notation (DDPM, Ho et al. 2020; DDIM, Song et al. 2021; DPM-Solver++, Lu et al. 2022;
rectified flow, Liu et al. 2023):

    x_0  clean sample (pred_original_sample)      eps  Gaussian noise
    abar_t = prod_{s<=t} (1 - beta_s)             alpha_t = sqrt(abar_t), sigma_t = sqrt(1 - abar_t)
    x_t = alpha_t x_0 + sigma_t eps               v = alpha_t eps - sigma_t x_0     (diffusion)
    lambda_t = log(alpha_t / sigma_t)             half log-SNR (DPM-Solver)
    x_t = (1 - t) x_0 + t eps, t in [0, 1]         v = eps - x_0 = dx/dt             (flow)

The formulas themselves (forward noise, x_0 / eps / v conversions, the flow path) live in
:mod:`sceneleap_core.models.noise`, shared with the training objectives.

Shapes: x (B, G, D); timesteps are shared by the whole batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from sceneleap_core.models.noise import (  # PREDICTION_TYPES is also re-exported from here
    PREDICTION_TYPES,
    add_noise,
    eps_from_prediction,
    flow_interpolate,
    flow_x0,
    x0_from_prediction,
)

BETA_SCHEDULES = ("linear", "cosine")


@dataclass
class StepOutput:
    """Result of one scheduler step.

    Attributes:
        prev_sample: (B, G, D) x at the next (less noisy) timestep.
        pred_original_sample: (B, G, D) the current estimate of x_0.
    """

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


def make_alphas_cumprod(schedule: str, num_train_timesteps: int) -> torch.Tensor:
    """(T,) float64 abar_t for t = 0 .. T-1.

    * ``linear``: betas linear in [1e-4, 0.02] * 1000 / T (DDPM's range, rescaled so that any T
      spans the same total noise, as improved DDPM);
    * ``cosine``: abar(t) = cos^2(((t / T) + s) / (1 + s) * pi / 2), s = 0.008, betas capped at
      0.999 (Nichol & Dhariwal 2021).
    """
    if schedule not in BETA_SCHEDULES:
        raise ValueError(f"schedule: expected one of {BETA_SCHEDULES}, got {schedule!r}")
    if num_train_timesteps < 2:
        raise ValueError(f"num_train_timesteps: expected >= 2, got {num_train_timesteps}")
    T = num_train_timesteps
    if schedule == "linear":
        scale = 1000.0 / T
        betas = torch.linspace(1e-4 * scale, 0.02 * scale, T, dtype=torch.float64).clamp(max=0.999)
    else:
        s = 0.008
        steps = torch.arange(T + 1, dtype=torch.float64) / T
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cumprod(1.0 - betas, dim=0)


def _gather(coef: torch.Tensor, t: torch.Tensor, ndim: int) -> torch.Tensor:
    """coef (T,) at integer t (B,) -> (B, 1, ..., 1) broadcastable to an ndim tensor."""
    return coef.to(t.device)[t].reshape(-1, *([1] * (ndim - 1)))  # (B, 1, ..., 1)


def _randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


################################################################################
#                          Discrete diffusion schedulers                       #
################################################################################


class _DiffusionScheduler:
    """Shared parts: the training schedule, ``add_noise``, x_0 from a model output."""

    order = 1

    def __init__(
        self,
        num_train_timesteps: int = 100,
        beta_schedule: str = "cosine",
        prediction_type: str = "eps",
        clip_sample: bool = True,
        clip_sample_range: float = 1.0,
    ):
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type: expected one of {PREDICTION_TYPES}, got {prediction_type!r}")
        self.num_train_timesteps, self.beta_schedule = num_train_timesteps, beta_schedule
        self.prediction_type, self.clip_sample, self.clip_sample_range = prediction_type, clip_sample, clip_sample_range
        self.alphas_cumprod = make_alphas_cumprod(beta_schedule, num_train_timesteps)  # (T,) float64
        self.timesteps: torch.Tensor | None = None
        self._abar: list[float] = []  # abar at each of the n inference timesteps, then 1.0 (x_0)
        self._step_index = 0

    @property
    def num_inference_steps(self) -> int:
        return 0 if self.timesteps is None else len(self.timesteps)

    @property
    def draws_noise(self) -> bool:
        """Whether ``step`` draws random noise (then a reverse process is not a pure function of
        its start, e.g. for replaying it from a CUDA graph). DDPM: yes; DDIM: when ``eta > 0``."""
        return True

    def set_timesteps(self, num_inference_steps: int, device: torch.device | str | None = None) -> None:
        """Evenly spaced (``leading``/``trailing``-free: rounded linspace) timesteps from T-1 down to 0.

        Args:
            num_inference_steps: n, 1 <= n <= T.
            device: where ``self.timesteps`` (n,) int64 lives.
        """
        if not 1 <= num_inference_steps <= self.num_train_timesteps:
            raise ValueError(
                f"num_inference_steps: expected 1 <= n <= num_train_timesteps={self.num_train_timesteps}, "
                f"got {num_inference_steps}"
            )
        steps = torch.linspace(self.num_train_timesteps - 1, 0, num_inference_steps, dtype=torch.float64).round().long()
        self._abar = [float(self.alphas_cumprod[s]) for s in steps] + [1.0]
        self.timesteps = steps.to(device)
        self._step_index = 0

    def reset(self) -> None:
        """Rewind to the first timestep, keeping ``timesteps`` (e.g. to replay a loop captured in
        a CUDA graph without rebuilding device tensors)."""
        if self.timesteps is None:
            raise ValueError("reset: expected set_timesteps(n, device) to be called first")
        self._step_index = 0
        self._prev_x0, self._prev_h = None, None

    def _begin_step(self, sample: torch.Tensor) -> tuple[int, float, float]:
        if self.timesteps is None:
            raise ValueError("step: expected set_timesteps(n, device) to be called before step()")
        i = self._step_index
        if i >= self.num_inference_steps:
            raise ValueError(
                f"step: expected at most {self.num_inference_steps} steps after set_timesteps, got step {i + 1}; "
                "call set_timesteps again to restart"
            )
        self._step_index += 1
        return i, self._abar[i], self._abar[i + 1]

    def _pred_x0_eps(self, model_output, sample, abar_t):
        """x_0 and eps implied by the model output at abar_t (python float)."""
        a, s = math.sqrt(abar_t), math.sqrt(1.0 - abar_t)
        x0 = x0_from_prediction(self.prediction_type, model_output, sample, a, s)
        if not self.clip_sample:
            return x0, eps_from_prediction(self.prediction_type, model_output, sample, a, s)
        # eps re-derived from the clipped x_0, as if the model had predicted it
        x0 = x0.clamp(-self.clip_sample_range, self.clip_sample_range)
        return x0, eps_from_prediction("x0", x0, sample, a, s)

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """Forward process q(x_t | x_0): x_0 (B, ...), eps (B, ...), integer t (B,) -> x_t (B, ...)."""
        abar = _gather(self.alphas_cumprod, timesteps, original_samples.dim()).to(original_samples.dtype)
        return add_noise(original_samples, noise, abar.sqrt(), (1 - abar).sqrt())


class DDPMScheduler(_DiffusionScheduler):
    """Ancestral sampling of the DDPM posterior q(x_{t'} | x_t, x_0), t' the next inference step
    (strided when n < T, as the respaced diffusion of improved DDPM)."""

    def step(self, model_output, timestep, sample, generator: torch.Generator | None = None) -> StepOutput:
        """One reverse step. ``timestep`` is the current ``self.timesteps`` entry (the scheduler
        tracks its position itself)."""
        # 1. abar at t and at the previous (less noisy) step t'; beta'_t = 1 - abar_t / abar_t'
        i, abar_t, abar_prev = self._begin_step(sample)
        beta = 1.0 - abar_t / abar_prev
        # 2.-3. predicted x_0 (clipped), formula (15) of DDPM
        x0, _ = self._pred_x0_eps(model_output, sample, abar_t)
        # 4. posterior mean coefficients, formula (7)
        c_x0 = math.sqrt(abar_prev) * beta / (1.0 - abar_t)
        c_xt = math.sqrt(1.0 - beta) * (1.0 - abar_prev) / (1.0 - abar_t)
        # 5. mu_t = c_x0 x_0 + c_xt x_t
        mean = c_x0 * x0 + c_xt * sample
        # 6. posterior variance beta~_t = (1 - abar_t') / (1 - abar_t) beta'_t; no noise at the last step
        if i == self.num_inference_steps - 1:
            return StepOutput(mean, x0)
        var = max((1.0 - abar_prev) / (1.0 - abar_t) * beta, 1e-20)
        # 7. x_t' = mu_t + sqrt(beta~_t) z
        return StepOutput(mean + math.sqrt(var) * _randn_like(sample, generator), x0)


class DDIMScheduler(_DiffusionScheduler):
    """DDIM, formula (12) of Song et al.; ``eta`` = 0 deterministic, 1 ~ DDPM.

    Args (besides the shared ones): eta: stochasticity, >= 0.
    """

    def __init__(self, *args, eta: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        if eta < 0:
            raise ValueError(f"eta: expected >= 0, got {eta}")
        self.eta = eta

    @property
    def draws_noise(self) -> bool:
        return self.eta > 0

    def step(self, model_output, timestep, sample, generator: torch.Generator | None = None) -> StepOutput:
        # 1. abar_t and abar_prev (1.0 after the last step: x_0 itself)
        _, abar_t, abar_prev = self._begin_step(sample)
        # 2. predicted x_0 and eps (eps re-derived after clipping x_0)
        x0, eps = self._pred_x0_eps(model_output, sample, abar_t)
        # 3. sigma_t(eta) = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev), formula (16)
        sigma = self.eta * math.sqrt((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev))
        # 4.-5. x_prev = sqrt(abar_prev) x_0 + sqrt(1 - abar_prev - sigma^2) eps (+ sigma z): the
        # forward process at abar_prev with the deterministic share of eps ("direction pointing to x_t")
        prev = add_noise(x0, eps, math.sqrt(abar_prev), math.sqrt(max(1.0 - abar_prev - sigma**2, 0.0)))
        if sigma > 0:
            prev = prev + sigma * _randn_like(sample, generator)
        return StepOutput(prev, x0)


class DPMSolverMultistepScheduler(_DiffusionScheduler):
    """DPM-Solver++(2M): second-order multistep solver in data (x_0) prediction.

    Per step from t to s (h = lambda_s - lambda_t, r = h_prev / h):
        D = x0_t + (x0_t - x0_prev) / (2 r)      (first order: D = x0_t at the first and last step)
        x_s = (sigma_s / sigma_t) x_t + alpha_s (1 - e^{-h}) D       (Lu et al. 2022, Alg. 2)
    e^{-h} = (sigma_s / alpha_s) / (sigma_t / alpha_t) is computed directly, so the final step
    to sigma = 0 returns D exactly.
    """

    order = 2
    draws_noise = False

    def set_timesteps(self, num_inference_steps, device=None):
        super().set_timesteps(num_inference_steps, device)
        self._prev_x0: torch.Tensor | None = None
        self._prev_h: float | None = None

    def step(self, model_output, timestep, sample, generator: torch.Generator | None = None) -> StepOutput:
        # 1. alpha, sigma at t and at the next step s
        i, abar_t, abar_s = self._begin_step(sample)
        a_t, s_t, a_s, s_s = math.sqrt(abar_t), math.sqrt(1 - abar_t), math.sqrt(abar_s), math.sqrt(1 - abar_s)
        # 2. data prediction x0_t
        x0, _ = self._pred_x0_eps(model_output, sample, abar_t)
        # 3. e^{-h} and h (h = inf on the final step to sigma = 0)
        exp_neg_h = (s_s / a_s) / (s_t / a_t)
        h = -math.log(exp_neg_h) if exp_neg_h > 0 else math.inf
        # 4. second-order correction from the previous x_0, except on the first and the last step
        last = i == self.num_inference_steps - 1
        d = x0
        if self._prev_x0 is not None and not last and math.isfinite(h):
            r = self._prev_h / h
            d = x0 + (x0 - self._prev_x0) / (2.0 * r)
        # 5. exponential-integrator update
        prev = (s_s / s_t) * sample + a_s * (1.0 - exp_neg_h) * d
        self._prev_x0, self._prev_h = x0, h
        return StepOutput(prev, x0)


################################################################################
#                          Flow-matching schedulers                            #
################################################################################


class _FlowScheduler:
    """Rectified flow x_t = (1 - t) x_0 + t eps; the model predicts v = eps - x_0 = dx/dt.

    Args:
        shift: timestep shift s (SD3): t' = s t / (1 + (s - 1) t); s > 1 spends more steps at high noise.
    """

    order = 1
    draws_noise = False  # ODE integrators: the reverse process is a function of its start

    def __init__(self, shift: float = 1.0):
        if shift <= 0:
            raise ValueError(f"shift: expected > 0, got {shift}")
        self.shift = shift
        self.timesteps: torch.Tensor | None = None
        self._t: list[float] = []
        self._step_index = 0

    @property
    def num_inference_steps(self) -> int:
        return 0 if self.timesteps is None else len(self.timesteps)

    def _grid(self, n: int) -> list[float]:
        if n < 1:
            raise ValueError(f"num_inference_steps: expected >= 1, got {n}")
        t = torch.linspace(1.0, 0.0, n + 1, dtype=torch.float64)
        t = self.shift * t / (1 + (self.shift - 1) * t)
        return [float(x) for x in t]

    def reset(self) -> None:
        """Rewind to the first timestep, keeping ``timesteps``."""
        if self.timesteps is None:
            raise ValueError("reset: expected set_timesteps(n, device) to be called first")
        self._step_index = 0
        self._x_i, self._v_i = None, None

    def _begin_step(self) -> int:
        if self.timesteps is None:
            raise ValueError("step: expected set_timesteps(n, device) to be called before step()")
        if self._step_index >= len(self.timesteps):
            raise ValueError(
                f"step: expected at most {len(self.timesteps)} steps after set_timesteps, got step "
                f"{self._step_index + 1}; call set_timesteps again to restart"
            )
        self._step_index += 1
        return self._step_index - 1

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """x_t = (1 - t) x_0 + t eps for continuous t (B,) in [0, 1]."""
        t = timesteps.to(original_samples.dtype).reshape(-1, *([1] * (original_samples.dim() - 1)))  # (B, 1, 1)
        return flow_interpolate(original_samples, noise, t)


class FlowEulerScheduler(_FlowScheduler):
    """Euler integration of dx/dt = v from t = 1 to 0 in n steps."""

    def set_timesteps(self, num_inference_steps: int, device=None) -> None:
        self._t = self._grid(num_inference_steps)
        self.timesteps = torch.tensor(self._t[:-1], dtype=torch.float32, device=device)
        self._step_index = 0

    def step(self, model_output, timestep, sample, generator=None) -> StepOutput:
        # 1. current t and next t'
        i = self._begin_step()
        t, t_next = self._t[i], self._t[i + 1]
        # 2. x_0 estimate: x_t - t v
        x0 = flow_x0(sample, model_output, t)
        # 3. x_t' = x_t + (t' - t) v
        return StepOutput(sample + (t_next - t) * model_output, x0)


class FlowHeunScheduler(_FlowScheduler):
    """Heun (explicit trapezoid) integration: 2 model evaluations per interval.

    ``timesteps`` lists [t_0, t_1, t_1, t_2, ..., t_{n-1}, t_n] without the final 0 repeated
    first: evaluations alternate predictor (at t_i) and corrector (at t_{i+1}, fed the Euler
    estimate). ``step`` keeps the predictor state between the two calls, like diffusers' Heun.
    """

    order = 2

    def set_timesteps(self, num_inference_steps: int, device=None) -> None:
        grid = self._grid(num_inference_steps)
        self._t = []
        for i in range(num_inference_steps):
            self._t += [grid[i], grid[i + 1]]
        self._grid_t = grid
        self.timesteps = torch.tensor(self._t, dtype=torch.float32, device=device)
        self._step_index = 0
        self._x_i: torch.Tensor | None = None
        self._v_i: torch.Tensor | None = None

    def step(self, model_output, timestep, sample, generator=None) -> StepOutput:
        k = self._begin_step()
        i = k // 2
        t, t_next = self._grid_t[i], self._grid_t[i + 1]
        if k % 2 == 0:
            # 1. predictor: v_i at (x_i, t_i); Euler estimate at t_{i+1}
            self._x_i, self._v_i = sample, model_output
            return StepOutput(sample + (t_next - t) * model_output, flow_x0(sample, model_output, t))
        # 2. corrector: x_{i+1} = x_i + (t' - t) (v_i + v') / 2
        v = 0.5 * (self._v_i + model_output)
        prev = self._x_i + (t_next - t) * v
        return StepOutput(prev, flow_x0(self._x_i, v, t))


SCHEDULERS = {
    "ddpm": DDPMScheduler,
    "ddim": DDIMScheduler,
    "dpmpp": DPMSolverMultistepScheduler,
    "euler": FlowEulerScheduler,
    "heun": FlowHeunScheduler,
}
DIFFUSION_SAMPLERS = ("ddpm", "ddim", "dpmpp")
FLOW_SAMPLERS = ("euler", "heun")
