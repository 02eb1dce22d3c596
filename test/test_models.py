"""GraspGenerator: every encoder/denoiser/objective combination, overfitting, guidance, files, errors."""

from __future__ import annotations

import json

import pytest
import torch

from sceneleap_core.atomic import default_file_mode
from sceneleap_core.hand import GraspNormalizer
from sceneleap_core.models import (
    GENERATOR_PRESETS,
    DenoisingLoop,
    GeneratorConfig,
    GraspGenerator,
    build_generator,
    cfg_combine,
)
from sceneleap_core.models.schedulers import SCHEDULERS

B, N, G, D = 2, 96, 4, 25


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _batch(seed=0, b=B, n=N, g=G):
    gen = torch.Generator().manual_seed(seed)
    return 0.2 * torch.randn(b, n, 3, generator=gen), torch.rand(b, g, D, generator=gen) * 2 - 1


def _tiny(**kw):
    return build_generator("tiny", encoder_points=64, **kw)


@pytest.mark.parametrize("objective", ["ddpm", "flow", "cvae"])
@pytest.mark.parametrize("denoiser", ["dit", "unet"])
@pytest.mark.parametrize("encoder", ["pointnet2", "ptv", "lite"])
def test_every_combination_forward_backward(encoder, denoiser, objective):
    torch.manual_seed(0)
    model = _tiny(encoder=encoder, denoiser=denoiser, objective=objective)
    points, grasps = _batch()
    out = model.training_loss(points, grasps, generator=torch.Generator().manual_seed(1))
    assert out["loss"].dim() == 0 and torch.isfinite(out["loss"])
    assert out["pred_x0"].shape == (B, G, D)
    assert out["cond_dropped"].shape == (B,) and out["t"].shape == (B,)
    out["loss"].backward()
    grads = [p.grad for p in model.denoiser.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    # zero-initialized outputs: the very first step must still move the output layer
    assert any(g.abs().sum() > 0 for g in grads)
    model.eval()
    samples = model.sample(
        points, num_grasps=3, steps=2, guidance_scale=1.5, generator=torch.Generator().manual_seed(2)
    )
    assert samples.shape == (B, 3, D) and torch.isfinite(samples).all()


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_diffusion_targets_and_schedules(prediction, schedule):
    model = _tiny(prediction=prediction, schedule=schedule)
    points, grasps = _batch()
    out = model.training_loss(points, grasps, generator=torch.Generator().manual_seed(0))
    out["loss"].backward()
    assert torch.isfinite(out["pred_x0"]).all()
    model.eval()
    for sampler in ("ddpm", "ddim", "dpmpp"):
        assert model.sample(points, num_grasps=2, steps=3, sampler=sampler).shape == (B, 2, D)


def test_flow_samplers():
    model = _tiny(objective="flow").eval()
    points, _ = _batch()
    for sampler in ("euler", "heun"):
        assert model.sample(points, num_grasps=2, steps=3, sampler=sampler).shape == (B, 2, D)


@pytest.mark.parametrize(
    ("objective", "extra"),
    [("ddpm", {"prediction": "eps"}), ("ddpm", {"prediction": "x0", "denoiser": "unet"}), ("flow", {}), ("cvae", {})],
)
def test_tiny_model_overfits_one_batch(objective, extra):
    """Fixed batch, fixed noise and timesteps (re-seeded generator): a regression problem the
    tiny model must fit; the loss falls at least 10x."""
    torch.manual_seed(0)
    model = _tiny(objective=objective, p_uncond=0.0, **extra)
    points, grasps = _batch(seed=3, g=4)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        out = model.training_loss(points, grasps, generator=torch.Generator().manual_seed(0))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])


def test_cfg_dropout_rate_and_null_condition():
    model = _tiny(p_uncond=0.25)
    points, grasps = _batch(b=400, n=64, g=2)
    out = model.training_loss(points, grasps, generator=torch.Generator().manual_seed(0))
    rate = out["cond_dropped"].float().mean().item()
    assert abs(rate - 0.25) < 5 * (0.25 * 0.75 / 400) ** 0.5  # within 5 sigma
    # the null condition is scene independent and differs from a real scene's
    small = points[:3]

    def seeded():  # the lite encoder's voxel point sampling is random: same draw for every call
        return torch.Generator().manual_seed(9)

    null = model.encode_scene(small, drop=True, generator=seeded())
    assert torch.allclose(null.cond[0], null.cond[1]) and torch.allclose(null.kv[0][0][0], null.kv[0][0][2])
    cond = model.encode_scene(small, generator=seeded())
    assert not torch.allclose(cond.cond[0], null.cond[0])
    mixed = model.encode_scene(small, drop=torch.tensor([True, False, True]), generator=seeded())
    assert torch.allclose(mixed.cond[0], null.cond[0]) and torch.allclose(mixed.cond[1], cond.cond[1])
    # p_uncond = 0 never drops
    assert not _tiny(p_uncond=0.0).training_loss(points, grasps)["cond_dropped"].any()


def _train_a_little(model, steps=5):
    points, grasps = _batch(seed=5)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for i in range(steps):
        loss = model.training_loss(points, grasps, generator=torch.Generator().manual_seed(i))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_guidance_scale_one_equals_conditional_prediction():
    model = _train_a_little(_tiny(p_uncond=0.5))
    points, _ = _batch()
    cache, null = model.encode_scene(points), model.encode_scene(points, drop=True)
    x = torch.randn(B, G, D, generator=torch.Generator().manual_seed(0))
    t = torch.tensor(500.0)
    cond_out = model.denoiser(x, t, cache)
    both = cache.cat(null)
    for batched in (True, False):
        loop = DenoisingLoop(model.denoiser, model.objective, None, guidance_scale=1.0, batched_guidance=batched)
        assert torch.equal(loop.predict(x, t, cache, both, null), cond_out)
    # the CFG formula at w = 1 reproduces the conditional output, and w = 0 the unconditional one
    uncond_out = model.denoiser(x, t, null)
    assert torch.allclose(cfg_combine(cond_out, uncond_out, 1.0), cond_out, atol=1e-6)
    assert torch.allclose(cfg_combine(cond_out, uncond_out, 0.0), uncond_out)
    # batched and two-pass guidance agree, and guidance changes the prediction
    g3 = [
        DenoisingLoop(model.denoiser, model.objective, None, guidance_scale=3.0, batched_guidance=b).predict(
            x, t, cache, both, null
        )
        for b in (True, False)
    ]
    assert torch.allclose(g3[0], g3[1], atol=1e-5) and not torch.allclose(g3[0], cond_out)
    # the full denoising loop with w = 1 equals a hand-written conditional DDIM loop
    got = model.sample(
        points, num_grasps=G, steps=4, sampler="ddim", guidance_scale=1.0, generator=torch.Generator().manual_seed(7)
    )
    sched = model.make_scheduler("ddim")
    sched.set_timesteps(4)
    xt = torch.randn(B, G, D, generator=torch.Generator().manual_seed(7))
    for ts in sched.timesteps:
        xt = sched.step(model.denoiser(xt, model.objective.model_time(ts), cache), ts, xt).prev_sample
    assert torch.allclose(got, xt, atol=1e-6)


@pytest.mark.parametrize(
    "preset_kw", [{}, {"objective": "cvae", "denoiser": "unet"}, {"encoder": "ptv", "objective": "flow"}]
)
def test_save_load_round_trip(tmp_path, preset_kw):
    model = _train_a_little(_tiny(**preset_kw), steps=2)
    normalizer = GraspNormalizer(-torch.ones(D) * 2, torch.ones(D) * 3)
    model.save_pretrained(tmp_path / "ckpt", normalizer=normalizer, extra_config={"epoch": 3, "note": "x"})
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors"]
    loaded, norm2, extra = GraspGenerator.load_pretrained(tmp_path / "ckpt")
    assert extra == {"epoch": 3, "note": "x"} and loaded.config == model.config
    assert torch.equal(norm2.lower, normalizer.lower) and torch.equal(norm2.upper, normalizer.upper)
    points, _ = _batch()
    x, t = torch.randn(B, G, loaded.denoiser.in_dim), torch.full((B,), 300.0)
    assert torch.equal(model(x, t, points), loaded(x, t, points))
    s1 = model.sample(points, num_grasps=3, steps=3, generator=torch.Generator().manual_seed(1))
    s2 = loaded.sample(points, num_grasps=3, steps=3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(s1, s2)


def test_load_errors(tmp_path):
    with pytest.raises(ValueError, match=r"config\.json"):
        GraspGenerator.load_pretrained(tmp_path / "missing")
    model = _tiny()
    model.save_pretrained(tmp_path / "a")
    (tmp_path / "a" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="cannot read"):
        GraspGenerator.load_pretrained(tmp_path / "a")
    model.save_pretrained(tmp_path / "b")
    meta = json.loads((tmp_path / "b" / "config.json").read_text())
    meta["config"]["d_model"] = 64
    (tmp_path / "b" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="do not match"):
        GraspGenerator.load_pretrained(tmp_path / "b")
    meta["config"]["encoder"] = "nope"
    (tmp_path / "b" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"GeneratorConfig\.encoder"):
        GraspGenerator.load_pretrained(tmp_path / "b")
    with pytest.raises(ValueError, match="JSON-serializable"):
        model.save_pretrained(tmp_path / "c", extra_config={"bad": object()})


def test_config_errors_name_the_key():
    cases = {
        "encoder": "resnet",
        "denoiser": "mlp",
        "objective": "gan",
        "prediction": "score",
        "schedule": "sqrt",
        "p_uncond": 1.0,
        "d_model": 32,  # not a multiple of heads=6
        "depth": 0,
        "num_train_timesteps": 1,
        "point_sampler": "grid",
        "encoder_points": 64,  # < num_scene_tokens
    }
    for key, value in cases.items():
        with pytest.raises(ValueError, match=rf"GeneratorConfig\.{key}"):
            GeneratorConfig(**{key: value}).validate()
    with pytest.raises(ValueError, match="unknown"):
        GeneratorConfig.from_dict({"widht": 3})
    with pytest.raises(ValueError, match="preset"):
        build_generator("dit_xxl")
    assert GeneratorConfig.from_dict(GeneratorConfig(unet_mults=(1, 2, 4)).to_dict()).unet_mults == (1, 2, 4)
    for name, factory in GENERATOR_PRESETS.items():
        assert isinstance(factory(), GeneratorConfig), name


def test_bad_inputs_raise_clear_errors():
    model = _tiny()
    points, grasps = _batch()
    with pytest.raises(ValueError, match=r"points: expected a \(B, N, 3\)"):
        model.training_loss(points[..., :2], grasps)
    with pytest.raises(ValueError, match="grasps: expected shape"):
        model.training_loss(points, grasps[..., :24])
    with pytest.raises(ValueError, match="grasps: expected shape"):
        model.training_loss(points, grasps[:1])
    with pytest.raises(ValueError, match="at least"):
        model.training_loss(points[:, :8], grasps)
    with pytest.raises(ValueError, match="sampler"):
        model.sample(points, sampler="euler")
    with pytest.raises(ValueError, match="x_t: expected shape"):
        model.denoiser(torch.zeros(B, G, 7), torch.zeros(B), model.encode_scene(points))
    with pytest.raises(ValueError, match="batch"):
        model.denoiser(torch.zeros(B + 1, G, D), torch.zeros(B + 1), model.encode_scene(points))
    with pytest.raises(ValueError, match="drop"):
        model.encode_scene(points, drop=torch.zeros(B + 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="null_cache"):
        DenoisingLoop(model.denoiser, model.objective, model.make_scheduler(), guidance_scale=2.0)(
            model.encode_scene(points), torch.zeros(B, G, D)
        )


def test_schedulers_reject_misuse():
    for name in SCHEDULERS:
        sched = SCHEDULERS[name]()
        with pytest.raises(ValueError, match="set_timesteps"):
            sched.step(torch.zeros(1, 1, D), 0, torch.zeros(1, 1, D))
        sched.set_timesteps(2)
        x = torch.zeros(1, 1, D)
        for t in sched.timesteps:
            x = sched.step(torch.zeros_like(x), t, x).prev_sample
        with pytest.raises(ValueError, match="at most"):
            sched.step(torch.zeros_like(x), 0, x)
    with pytest.raises(ValueError, match="num_inference_steps"):
        SCHEDULERS["ddim"](num_train_timesteps=10).set_timesteps(11)
    with pytest.raises(ValueError, match="eta"):
        SCHEDULERS["ddim"](eta=-1.0)


def test_schedulers_say_whether_they_draw_noise_and_the_loop_replays_from_set_timesteps():
    """``draws_noise`` decides whether a whole reverse process may be replayed from a CUDA graph:
    a noise-free one must give the same grasps from the same start however often it is run."""
    assert SCHEDULERS["ddpm"]().draws_noise and SCHEDULERS["ddim"](eta=0.5).draws_noise
    assert not any(SCHEDULERS[n]().draws_noise for n in ("ddim", "dpmpp", "euler", "heun"))
    model = _tiny().eval()
    points, _ = _batch()
    cache, x_init = model.encode_scene(points), torch.randn(B, G, D, generator=torch.Generator().manual_seed(3))
    for name in ("ddim", "dpmpp", "ddpm"):
        loop = DenoisingLoop(model.denoiser, model.objective, model.make_scheduler(name))
        with pytest.raises(ValueError, match="set_timesteps"):
            loop.reverse(cache, x_init)
        ref = loop(cache, x_init, num_inference_steps=4, generator=torch.Generator().manual_seed(5))
        again = [loop.reverse(cache, x_init, generator=torch.Generator().manual_seed(s)) for s in (5, 6)]
        torch.testing.assert_close(again[0], ref)  # reverse rewinds the scheduler: the same 4 steps again
        assert torch.equal(again[0], again[1]) != loop.scheduler.draws_noise  # only DDPM's noise differs


@pytest.mark.parametrize("name", ["ddim", "dpmpp", "ddpm"])
@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_diffusion_schedulers_with_an_oracle_recover_x0(name, prediction):
    """A model that knows x_0 gives the exact eps/x0/v at every step; deterministic samplers
    (and DDPM's final mean) must then land on x_0."""
    x0 = torch.rand(3, 5, D, generator=torch.Generator().manual_seed(0)) * 1.6 - 0.8
    sched = SCHEDULERS[name](num_train_timesteps=100, beta_schedule="cosine", prediction_type=prediction)
    sched.set_timesteps(8)
    x = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).float()
    for t in sched.timesteps:
        abar = sched.alphas_cumprod[t].float()
        a, s = abar.sqrt(), (1 - abar).sqrt()
        eps = (x - a * x0) / s
        out = {"eps": eps, "x0": x0, "v": a * eps - s * x0}[prediction]
        x = sched.step(out, t, x, generator=torch.Generator().manual_seed(2)).prev_sample
    assert torch.allclose(x, x0, atol=1e-4)


@pytest.mark.parametrize("name", ["euler", "heun"])
def test_flow_schedulers_with_an_oracle_recover_x0(name):
    x0 = torch.rand(2, 3, D, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(2, 3, D, generator=torch.Generator().manual_seed(1))
    sched = SCHEDULERS[name](shift=2.0)
    sched.set_timesteps(5)
    x = noise
    for t in sched.timesteps:
        x = sched.step(noise - x0, t, x).prev_sample  # straight path: v is constant
    assert torch.allclose(x, x0, atol=1e-5)
    assert torch.allclose(sched.add_noise(x0, noise, torch.tensor([0.0, 1.0])), torch.stack([x0[0], noise[1]]))


def test_dit_is_permutation_equivariant_over_grasps_and_checkpointing_matches():
    model = _train_a_little(_tiny(), steps=2)
    points, _ = _batch()
    cache = model.encode_scene(points)
    x, t = torch.randn(B, 6, D), torch.full((B,), 250.0)
    perm = torch.randperm(6)
    assert torch.allclose(model.denoiser(x, t, cache)[:, perm], model.denoiser(x[:, perm], t, cache), atol=1e-5)
    # gradient checkpointing gives the same gradients
    ref = _tiny(grad_checkpointing=False)
    ckpt = _tiny(grad_checkpointing=True)
    ckpt.load_state_dict(ref.state_dict())
    grads = []
    for m in (ref, ckpt):
        m.train()
        m.training_loss(*_batch(), generator=torch.Generator().manual_seed(0))["loss"].backward()
        grads.append(torch.cat([p.grad.flatten() for p in m.denoiser.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


@pytest.mark.parametrize("denoiser", ["dit", "unet"])
def test_padding_mask_hides_padded_grasps(denoiser):
    """Padded grasps (mask False) change neither the loss nor the real grasps' predictions."""
    model = _train_a_little(_tiny(denoiser=denoiser, objective="cvae"), steps=2).train()
    points, grasps = _batch(g=6)
    mask = torch.tensor([[True] * 4 + [False] * 2, [True] * 6])
    other = grasps.clone()
    other[0, 4:] = 5.0  # garbage in the padding
    losses = [
        model.training_loss(points, g, generator=torch.Generator().manual_seed(0), mask=mask)["loss"]
        for g in (grasps, other)
    ]
    assert torch.allclose(losses[0], losses[1])
    cache = model.encode_scene(points, generator=torch.Generator().manual_seed(0))
    x = torch.randn(B, 6, model.denoiser.in_dim)
    x2 = x.clone()
    x2[0, 4:] = 7.0
    out1, out2 = (
        model.denoiser(x, torch.full((B,), 10.0), cache, mask),
        model.denoiser(x2, torch.full((B,), 10.0), cache, mask),
    )
    assert torch.allclose(out1[0, :4], out2[0, :4], atol=1e-6) and torch.allclose(out1[1], out2[1])
    with pytest.raises(ValueError, match="mask"):
        model.training_loss(points, grasps, mask=mask[:, :3])


def test_load_rejects_bad_configs_and_flipped_weights_naming_the_key(tmp_path):
    import json

    model = _tiny()
    model.save_pretrained(tmp_path / "ok")
    meta = json.loads((tmp_path / "ok" / "config.json").read_text())
    weights = (tmp_path / "ok" / "model.safetensors").read_bytes()
    cases = {
        "no_config": ({k: v for k, v in meta.items() if k != "config"}, r"expected a 'config' object"),
        "mlp_ratio": ({**meta, "config": {**meta["config"], "mlp_ratio": "x"}}, r"mlp_ratio: expected a finite number"),
        "flow_shift": ({**meta, "config": {**meta["config"], "flow_shift": float("nan")}}, r"flow_shift: expected a finite"),
        "version": ({**meta, "format_version": "2"}, r"expected an int format_version <= 1 .*got '2'"),
    }  # fmt: skip
    for name, (bad, pattern) in cases.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps(bad))
        (tmp_path / name / "model.safetensors").write_bytes(weights)
        with pytest.raises(ValueError, match=rf"checkpoint: .*{pattern}"):
            GraspGenerator.load_pretrained(tmp_path / name)
    # one flipped byte inside a tensor: safetensors reads it, the recorded sha256 does not match
    flipped = bytearray(weights)
    flipped[-7] ^= 0x10
    (tmp_path / "ok" / "model.safetensors").write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match=r"model\.safetensors does not match its sha256"):
        GraspGenerator.load_pretrained(tmp_path / "ok")


def test_save_pretrained_float16_shards_round_trip_and_a_missing_shard_is_named(tmp_path):
    torch.manual_seed(0)
    model = _tiny()
    full = model.save_pretrained(tmp_path / "full")
    per_tensor_max = max(v.numel() * 2 for v in model.state_dict().values())
    packed = model.save_pretrained(tmp_path / "packed", dtype=torch.float16, max_shard_bytes=4 * per_tensor_max)
    files = sorted(p.name for p in packed.glob("*.safetensors"))
    assert len(files) > 1 and files[0] == f"model-00001-of-{len(files):05d}.safetensors"
    size = lambda d: sum(p.stat().st_size for p in d.glob("*.safetensors"))  # noqa: E731
    assert size(packed) < 0.6 * size(full)
    # every file readable as any other file this process writes (safetensors alone creates them 0600)
    # and no temp left behind
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in packed.iterdir()}
    assert set(modes.values()) == {oct(default_file_mode())}, modes
    assert not list(packed.glob("*.tmp*"))
    loaded, _, _ = GraspGenerator.load_pretrained(packed)
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert b.dtype == a.dtype, name  # cast back to the model's dtype
        assert torch.allclose(a.float(), b.float(), rtol=1e-3, atol=1e-4), name
    # re-saving as one file removes the shards; a deleted shard is named on load
    model.save_pretrained(tmp_path / "packed")
    assert sorted(p.name for p in packed.glob("*.safetensors")) == ["model.safetensors"]
    model.save_pretrained(tmp_path / "packed", dtype=torch.float16, max_shard_bytes=4 * per_tensor_max)
    (packed / files[-1]).unlink()
    with pytest.raises(ValueError, match=rf"expected {files[-1]} in"):
        GraspGenerator.load_pretrained(packed)
    with pytest.raises(ValueError, match="floating-point"):
        model.save_pretrained(tmp_path / "bad", dtype=torch.int8)


def test_the_deployed_sampler_travels_with_the_model_and_is_the_default(tmp_path):
    model = build_generator("tiny", anchor="seed", sampler="ddim")
    plain = build_generator("tiny", anchor="seed")
    assert model.default_sampler == "ddim" and plain.default_sampler == plain.objective.default_sampler == "dpmpp"
    assert type(model.make_scheduler()) is type(plain.make_scheduler("ddim"))
    assert type(model.make_scheduler("dpmpp")) is type(plain.make_scheduler())  # a named sampler wins
    loaded, _, _ = GraspGenerator.load_pretrained(model.save_pretrained(tmp_path / "m"))
    assert loaded.default_sampler == "ddim"
    with pytest.raises(ValueError, match=r"GeneratorConfig\.sampler"):
        build_generator("tiny", sampler="ddim2")
