"""The forward-noise process and the conversions between x_0, eps and v (one home for both the
training objectives and the sampling schedulers).

Diffusion (DDPM / DDIM / DPM-Solver++), with alpha_t = sqrt(abar_t), sigma_t = sqrt(1 - abar_t):

    x_t = alpha x_0 + sigma eps          v = alpha eps - sigma x_0
    eps-prediction:  x_0 = (x_t - sigma eps) / alpha
    x0-prediction:   eps = (x_t - alpha x_0) / sigma
    v-prediction:    x_0 = alpha x_t - sigma v,  eps = sigma x_t + alpha v   (needs alpha^2 + sigma^2 = 1)

Rectified flow, t in [0, 1]:

    x_t = (1 - t) x_0 + t eps            v = eps - x_0 = dx/dt,  x_0 = x_t - t v

Shapes: x_0, eps, x_t and model outputs are (B, ...) tensors of one shape, e.g. (B, G, D).
``alpha``, ``sigma`` and ``t`` are Python floats (the schedulers: one timestep for the whole
batch, no device reads) or tensors broadcastable to it, e.g. (B, 1, 1) (the objectives: one
timestep per sample). The functions are pure and elementwise; none reads a tensor back to the host.
"""

from __future__ import annotations

import torch

PREDICTION_TYPES = ("eps", "x0", "v")

Coef = float | torch.Tensor  # a Python float or a tensor broadcastable to the samples


def _check_kind(kind: str) -> None:
    if kind not in PREDICTION_TYPES:
        raise ValueError(f"prediction type: expected one of {PREDICTION_TYPES}, got {kind!r}")


# ----------------------------------------------------------------------------- diffusion
def add_noise(x0: torch.Tensor, eps: torch.Tensor, alpha: Coef, sigma: Coef) -> torch.Tensor:
    """Forward process q(x_t | x_0): x_t = alpha x_0 + sigma eps. x0, eps (B, ...) -> (B, ...)."""
    return alpha * x0 + sigma * eps


def prediction_target(kind: str, x0: torch.Tensor, eps: torch.Tensor, alpha: Coef, sigma: Coef) -> torch.Tensor:
    """What a ``kind`` (``eps`` / ``x0`` / ``v``) model regresses at (alpha, sigma): eps, x_0 or
    v = alpha eps - sigma x_0. x0, eps (B, ...) -> (B, ...)."""
    _check_kind(kind)
    if kind == "eps":
        return eps
    if kind == "x0":
        return x0
    return alpha * eps - sigma * x0


def x0_from_prediction(kind: str, out: torch.Tensor, x_t: torch.Tensor, alpha: Coef, sigma: Coef) -> torch.Tensor:
    """The x_0 implied by a ``kind`` model output ``out`` at x_t. out, x_t (B, ...) -> (B, ...).

    ``eps`` divides by alpha (clamp alpha first where it can vanish)."""
    _check_kind(kind)
    if kind == "eps":
        return (x_t - sigma * out) / alpha
    if kind == "x0":
        return out
    return alpha * x_t - sigma * out


def eps_from_prediction(kind: str, out: torch.Tensor, x_t: torch.Tensor, alpha: Coef, sigma: Coef) -> torch.Tensor:
    """The eps implied by a ``kind`` model output ``out`` at x_t. out, x_t (B, ...) -> (B, ...).

    ``x0`` divides by sigma (> 0 at every training timestep)."""
    _check_kind(kind)
    if kind == "eps":
        return out
    if kind == "x0":
        return (x_t - alpha * out) / sigma
    return sigma * x_t + alpha * out


# ----------------------------------------------------------------------------- flow matching
def flow_interpolate(x0: torch.Tensor, eps: torch.Tensor, t: Coef) -> torch.Tensor:
    """Rectified-flow path x_t = (1 - t) x_0 + t eps. x0, eps (B, ...) -> (B, ...)."""
    return (1 - t) * x0 + t * eps


def flow_velocity(x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """The flow-matching target v = eps - x_0 = dx_t/dt. x0, eps (B, ...) -> (B, ...)."""
    return eps - x0


def flow_x0(x_t: torch.Tensor, v: torch.Tensor, t: Coef) -> torch.Tensor:
    """The x_0 implied by a velocity v at (x_t, t): x_0 = x_t - t v. x_t, v (B, ...) -> (B, ...)."""
    return x_t - t * v
