"""The forward-noise formulas (models.noise) and their use by the objectives and schedulers."""

from __future__ import annotations

import math

import pytest
import torch

from sceneleap_core.models import DDIMScheduler, DiffusionObjective
from sceneleap_core.models.noise import (
    PREDICTION_TYPES,
    add_noise,
    eps_from_prediction,
    flow_interpolate,
    flow_velocity,
    flow_x0,
    prediction_target,
    x0_from_prediction,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

B, G, D = 3, 5, 25


def _x0_eps(seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x0 = (torch.rand(B, G, D, generator=g, dtype=dtype) * 2 - 1) * 0.9  # inside the clip range
    return x0, torch.randn(B, G, D, generator=g, dtype=dtype)


def _angles(seed=1):
    """(B, 1, 1) float64 phi in [0.05, pi/2 - 0.05]: alpha = cos phi, sigma = sin phi."""
    g = torch.Generator().manual_seed(seed)
    return 0.05 + (math.pi / 2 - 0.1) * torch.rand(B, 1, 1, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("kind", PREDICTION_TYPES)
@pytest.mark.parametrize("coef", ["tensor", "float"])
def test_round_trips_x0_to_xt_and_target_and_back(kind, coef):
    x0, eps = _x0_eps()
    phi = _angles()
    if coef == "float":
        phi = phi[:1]  # one timestep for the batch, as the schedulers use
        alpha, sigma = math.cos(float(phi)), math.sin(float(phi))
    else:
        alpha, sigma = phi.cos(), phi.sin()
    x_t = add_noise(x0, eps, alpha, sigma)
    target = prediction_target(kind, x0, eps, alpha, sigma)
    # the definitions, written out independently of the module
    torch.testing.assert_close(x_t, alpha * x0 + sigma * eps, rtol=0, atol=1e-12)
    expected = {"eps": eps, "x0": x0, "v": alpha * eps - sigma * x0}[kind]
    torch.testing.assert_close(target, expected, rtol=0, atol=1e-12)
    # the inversions recover x_0 and eps
    torch.testing.assert_close(x0_from_prediction(kind, target, x_t, alpha, sigma), x0, rtol=0, atol=1e-10)
    torch.testing.assert_close(eps_from_prediction(kind, target, x_t, alpha, sigma), eps, rtol=0, atol=1e-10)


def test_v_is_the_derivative_of_x_t_along_the_noise_angle():
    """With alpha = cos phi, sigma = sin phi: v = d x_t / d phi (the definition of v-prediction)."""
    x0, eps = _x0_eps()
    phi = _angles().requires_grad_(True)
    x_t = add_noise(x0, eps, phi.cos(), phi.sin())
    (dphi,) = torch.autograd.grad(x_t, phi, grad_outputs=torch.ones_like(x_t))
    v = prediction_target("v", x0, eps, phi.detach().cos(), phi.detach().sin())
    torch.testing.assert_close(dphi, v.sum(dim=(1, 2), keepdim=True), rtol=0, atol=1e-10)


def test_flow_path_velocity_and_x0():
    x0, eps = _x0_eps()
    t = torch.rand(B, 1, 1, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    x_t = flow_interpolate(x0, eps, t)
    torch.testing.assert_close(x_t, (1 - t) * x0 + t * eps, rtol=0, atol=1e-12)
    v = flow_velocity(x0, eps)
    torch.testing.assert_close(flow_interpolate(x0, eps, t + 1e-3), x_t + 1e-3 * v, rtol=0, atol=1e-10)  # dx/dt
    torch.testing.assert_close(flow_x0(x_t, v, t), x0, rtol=0, atol=1e-10)


def test_unknown_prediction_type_is_rejected():
    x0, eps = _x0_eps()
    for fn in (x0_from_prediction, eps_from_prediction):
        with pytest.raises(ValueError, match="prediction type"):
            fn("score", x0, eps, 0.6, 0.8)
    with pytest.raises(ValueError, match="prediction type"):
        prediction_target("score", x0, eps, 0.6, 0.8)


@pytest.mark.parametrize("kind", PREDICTION_TYPES)
@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_ddim_eta0_step_with_the_exact_prediction_lands_on_the_forward_noised_x(kind, clip, schedule):
    """x_t -> DDIM(eta = 0) step fed the true eps (or its x0 / v equivalent) = q-sample of the same
    (x_0, eps) at the previous timestep, at every step down to x_0 itself."""
    T = 100
    x0, eps = _x0_eps(3)
    sched = DDIMScheduler(num_train_timesteps=T, beta_schedule=schedule, prediction_type=kind, clip_sample=clip)
    sched.set_timesteps(7)
    abar = sched.alphas_cumprod  # (T,) float64

    def q_sample(t: int) -> torch.Tensor:  # written out, not through the module
        return abar[t].sqrt() * x0 + (1 - abar[t]).sqrt() * eps

    ts = [int(t) for t in sched.timesteps]
    x = q_sample(ts[0])
    for i, t in enumerate(ts):
        a, s = abar[t].sqrt(), (1 - abar[t]).sqrt()
        out = {"eps": eps, "x0": x0, "v": a * eps - s * x0}[kind]
        step = sched.step(out, torch.tensor(t), x)
        torch.testing.assert_close(step.pred_original_sample, x0, rtol=0, atol=1e-10)
        x = step.prev_sample
        expected = q_sample(ts[i + 1]) if i + 1 < len(ts) else x0
        torch.testing.assert_close(x, expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind", PREDICTION_TYPES)
def test_objective_and_scheduler_share_the_forward_process(kind):
    """Training's x_t is the scheduler's add_noise at the same t, and pred_x0 inverts the target."""
    x0, _ = _x0_eps(4, torch.float32)
    obj = DiffusionObjective(num_train_timesteps=50, schedule="cosine", prediction=kind)
    batch = obj.prepare(x0, generator=torch.Generator().manual_seed(5))
    sched = obj.make_scheduler("ddim")
    noise, t = batch.extras["noise"], batch.extras["timesteps"]
    torch.testing.assert_close(batch.x_in, sched.add_noise(x0, noise, t), rtol=0, atol=1e-6)
    torch.testing.assert_close(obj.pred_x0(batch.target, batch), x0, rtol=0, atol=2e-3 if kind == "eps" else 1e-5)
