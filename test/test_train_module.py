"""The LightningModule: overfitting, EMA, exact resume, atomic pickle-free checkpoints, export, CLI."""

from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from sceneleap_core.cli import main
from sceneleap_core.data.shards import ShardDataset
from sceneleap_core.hand import GraspNormalizer, anchor_relative
from sceneleap_core.models import GraspGenerator, build_generator
from sceneleap_core.train.checkpoint import AtomicCheckpointIO, load_checkpoint
from sceneleap_core.train.config import EMAConfig, OptimConfig, ValConfig, load_config
from sceneleap_core.train.data import GraspSceneDataset
from sceneleap_core.train.ema import EMA
from sceneleap_core.train.module import GraspTrainingModule
from sceneleap_core.train.runner import train
from sceneleap_core.train.toy import write_toy_dataset

TINY = Path(__file__).resolve().parents[1] / "config" / "train" / "tiny.yaml"
QUIET = dict(enable_progress_bar=False, enable_model_summary=False, logger=False)


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    return write_toy_dataset(tmp_path_factory.mktemp("toy"), num_scenes=8, views=2, num_points=300, grasps=(4, 12))


class _Repeat(Dataset):
    def __init__(self, batch, n):
        self.batch, self.n = batch, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.batch


class _Losses(L.Callback):
    def __init__(self):
        self.losses, self.seq = {}, []  # by optimizer step; every micro-batch as (step, loss)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses[trainer.global_step] = outputs["loss"].item()
        self.seq.append((trainer.global_step, outputs["loss"].item()))


class _Crash(L.Callback):
    def __init__(self, at_step):
        self.at_step = at_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.at_step:
            raise RuntimeError("simulated crash")


def test_tiny_model_overfits_one_batch(toy_root):
    torch.manual_seed(0)
    ds = GraspSceneDataset(ShardDataset(toy_root), num_points=128, num_grasps=4, augment=None)
    batch = default_collate([ds[0], ds[2]])
    batch["grasps"] = batch["grasps"][:, :1].expand(-1, 4, -1).contiguous()  # one grasp per scene: x0 is learnable
    norm = GraspNormalizer.fit(torch.cat([ds[i]["grasps"] for i in range(4)]).double())
    model = build_generator("tiny", prediction="x0", p_uncond=0.0)
    steps = 100
    module = GraspTrainingModule(
        model, norm, optim=OptimConfig(lr=3e-3, warmup_steps=5, weight_decay=0.0), ema=EMAConfig(decay=0.9),
        val=ValConfig(every=0), max_steps=steps,
    )  # fmt: skip
    log = _Losses()
    trainer = L.Trainer(
        max_steps=steps, accelerator="cpu", callbacks=[log], enable_checkpointing=False, limit_val_batches=0, **QUIET
    )
    trainer.fit(module, train_dataloaders=DataLoader(_Repeat(batch, steps), batch_size=None))
    losses = [log.losses[k] for k in sorted(log.losses)]
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last * 10 <= first, f"loss fell only from {first:.4f} to {last:.4f}"
    # the EMA moved away from the initialization and toward (not onto) the trained weights
    raw = dict(module.model.named_parameters())
    name = next(n for n in module.ema.shadow if n.endswith("weight") and raw[n].dim() == 2)
    assert module.ema.num_updates == steps
    assert not torch.equal(module.ema.shadow[name], raw[name].detach())


def test_ema_update_rule_and_swap():
    net = torch.nn.Linear(3, 2)
    ema = EMA(net, decay=0.9, warmup=False)
    before = {k: v.clone() for k, v in ema.shadow.items()}
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)
    torch.testing.assert_close(ema.shadow["weight"], 0.9 * before["weight"] + 0.1 * net.weight.detach())
    torch.testing.assert_close(ema.shadow["bias"], before["bias"])  # unchanged parameter, unchanged average
    raw = net.weight.detach().clone()
    with ema.swapped_into(net):
        torch.testing.assert_close(net.weight.detach(), ema.shadow["weight"])
    torch.testing.assert_close(net.weight.detach(), raw)
    warm = EMA(net, decay=0.999, warmup=True)
    assert warm.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0)
    other = EMA(net, decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.num_updates == 1 and other.decay == 0.9
    torch.testing.assert_close(other.shadow["weight"], ema.shadow["weight"])
    with pytest.raises(ValueError, match=r"ema\.decay: expected a decay in \(0, 1\)"):
        EMA(net, decay=1.0)


def _cfg(root, run, **over):
    base = {
        "data.root": root, "run_dir": run, "trainer.max_steps": 6, "trainer.checkpoint_every": 3,
        "val.every": 3, "logger": "csv", "data.num_points": 96, "data.batch_size": 3,
    }  # fmt: skip
    base.update(over)
    return load_config(TINY, [f"{k}={v}" for k, v in base.items()])


@pytest.mark.parametrize("accumulate", [1, 2])
def test_resume_continues_exactly(toy_root, tmp_path, accumulate):
    # uninterrupted run
    full = _Losses()
    train(_cfg(toy_root, tmp_path / "a", **{"optim.accumulate": accumulate}), callbacks=[full])
    # the same run killed at step 4 (after the step-3 checkpoint), then resumed
    part = _Losses()
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(_cfg(toy_root, tmp_path / "b", **{"optim.accumulate": accumulate}), callbacks=[part, _Crash(4)])
    assert load_checkpoint(tmp_path / "b" / "checkpoints" / "last.ckpt")["global_step"] == 3
    with pytest.raises(ValueError, match=r"already holds a checkpoint.*--resume"):
        train(_cfg(toy_root, tmp_path / "b"))
    resumed = _Losses()
    train(
        _cfg(toy_root, tmp_path / "b", **{"optim.accumulate": accumulate}), resume=tmp_path / "b", callbacks=[resumed]
    )
    # continues from step 3: the resumed micro-batches are exactly the uninterrupted run's from then on
    assert len(resumed.seq) == 3 * accumulate and resumed.seq[-1][0] == 6
    expected = full.seq[3 * accumulate :]
    assert [s for s, _ in resumed.seq] == [s for s, _ in expected]
    for (_, got), (_, want) in zip(resumed.seq, expected):
        assert got == pytest.approx(want, rel=1e-5, abs=1e-7)
    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.ckpt")
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.ckpt")
    assert a["global_step"] == b["global_step"] == 6
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    for key, value in a["ema"]["shadow"].items():
        torch.testing.assert_close(b["ema"]["shadow"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    sa, sb = a["optimizer_states"][0]["state"], b["optimizer_states"][0]["state"]
    assert sa.keys() == sb.keys()
    for i in sa:
        torch.testing.assert_close(sb[i]["exp_avg_sq"], sa[i]["exp_avg_sq"], rtol=1e-5, atol=1e-9)
        assert float(sb[i]["step"]) == float(sa[i]["step"]) == 6
    assert a["lr_schedulers"][0]["last_epoch"] == b["lr_schedulers"][0]["last_epoch"] == 6
    # the exported model is the EMA weights, in safetensors + JSON, loaded without pickle
    model, norm, extra = GraspGenerator.load_pretrained(tmp_path / "b" / "model")
    for key, value in model.state_dict().items():
        if key in b["ema"]["shadow"]:
            torch.testing.assert_close(value, b["ema"]["shadow"][key].to(value.dtype), msg=key)
    assert norm is not None and extra["data"]["num_points"] == 96 and extra["global_step"] == 6
    assert sorted(p.name for p in (tmp_path / "b" / "model").iterdir()) == ["config.json", "model.safetensors"]
    # validation ran and logged the sampled-grasp metrics
    csv = next((tmp_path / "a" / "csv").rglob("metrics.csv")).read_text()
    assert "val/chamfer_mm" in csv and "val/penetration_mm" in csv


def test_checkpoints_are_atomic_and_pickle_free(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 1}, path)

    def crash(obj, handle, *args, **kwargs):
        handle.write(b"partial")
        raise KeyboardInterrupt  # killed while writing

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "global_step": 2}, path)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temp file left behind
    assert io.load_checkpoint(path)["global_step"] == 1  # the previous checkpoint is intact
    # loading refuses pickled code
    torch.save({"obj": _Repeat(None, 1)}, tmp_path / "evil.ckpt")
    with pytest.raises(ValueError, match=r"evil\.ckpt: cannot load"):
        load_checkpoint(tmp_path / "evil.ckpt")
    (tmp_path / "cut.ckpt").write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"cut\.ckpt: cannot load"):
        load_checkpoint(tmp_path / "cut.ckpt")


def test_cli_trains_exports_and_resumes(toy_root, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--config", str(TINY), f"data.root={toy_root}", f"run_dir={run}", "data.num_points=64"]
    assert main([*args, "trainer.max_steps=2", "val.every=0", "logger=none"]) == 0
    assert "exported model" in capsys.readouterr().out
    model, norm, _ = GraspGenerator.load_pretrained(run / "model")
    assert norm is not None and model.config.depth == 2
    assert main(["train", "--resume", str(run), "trainer.max_steps=4"]) == 0
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 4
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2
    assert "--resume: expected a run directory or a .ckpt file" in capsys.readouterr().err


def test_auxiliary_grasp_losses_join_the_objective(toy_root):
    from sceneleap_core.models.losses import GraspLossConfig

    ds = GraspSceneDataset(ShardDataset(toy_root), num_points=128, num_grasps=4, augment=None)
    batch = default_collate([ds[0], ds[1]])
    norm = GraspNormalizer.fit(torch.cat([ds[i]["grasps"] for i in range(4)]).double())
    torch.manual_seed(0)
    model = build_generator("tiny")
    aux = GraspLossConfig(chamfer=1.0, penetration=1.0, chamfer_points=64, scene_points=64)
    plain = GraspTrainingModule(model, norm)
    module = GraspTrainingModule(model, norm, aux_loss=aux, aux_weight=0.5)
    gen = torch.Generator()
    base = plain._loss(batch, gen.manual_seed(1))
    out = module._loss(batch, gen.manual_seed(1))
    assert {"aux_chamfer", "aux_penetration", "aux_total"} <= set(out)
    torch.testing.assert_close(out["loss"], base["loss"] + 0.5 * out["aux_total"])
    assert out["aux_chamfer"] > 0
    out["loss"].backward()  # differentiable through the hand model
    assert all(p.grad is not None for p in model.denoiser.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match=r"aux_loss\.chamfer: expected"):
        load_config(TINY, ["aux_loss.chamfer=-1"])


def test_auxiliary_penetration_on_anchored_grasps(toy_root):
    """Anchored generators: the x0 estimate gets its anchors back and meets the points nearest each
    anchor; each sample weighs by its signal share (a pure-noise x0 estimate costs nothing)."""
    from sceneleap_core.models.losses import GraspLossConfig

    ds = GraspSceneDataset(ShardDataset(toy_root), num_points=128, num_grasps=4, augment=None)
    batch = default_collate([ds[0], ds[1]])
    norm = GraspNormalizer.fit(
        torch.cat([anchor_relative(ds[i]["grasps"], ds[i]["anchors"]) for i in range(4)]).double()
    )
    torch.manual_seed(0)
    model = build_generator("tiny", anchor="seed")
    aux = GraspLossConfig(translation=0, rotation=0, joints=0, penetration=10.0, scene_points=32,
                          penetration_over_target=True)  # fmt: skip
    module = GraspTrainingModule(model, norm, aux_loss=aux, aux_weight=1.0)
    gen = torch.Generator()
    base = GraspTrainingModule(model, norm)._loss(batch, gen.manual_seed(1))
    out = module._loss(batch, gen.manual_seed(1))
    assert out["signal"].shape == (2,) and ((out["signal"] >= 0) & (out["signal"] <= 1)).all()
    torch.testing.assert_close(out["loss"], base["loss"] + out["aux_total"])
    # the same terms by hand: anchors added back, 32 nearest points per anchor, signal x mask weights
    from sceneleap_core.geometry.pointops import gather_points, knn

    pts = gather_points(batch["points"], knn(batch["anchors"], batch["points"], 32)[1])  # (B, G, 32, 3)
    w = out["signal"][:, None] * batch["grasp_mask"].float()
    manual = module.aux(out["pred_x0"].detach().float(), module.network_target(batch).float(), pts,
                        offsets=batch["anchors"], weight=w)  # fmt: skip
    torch.testing.assert_close(out["aux_penetration"], manual["penetration"])
    out["loss"].backward()
    assert all(p.grad is not None for p in model.denoiser.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match=r"aux_loss\.match"):
        GraspTrainingModule(model, norm, aux_loss=GraspLossConfig(match=True), aux_weight=1.0)


def test_fine_tuning_starts_from_a_pretrained_model(toy_root, tmp_path):
    """``init_from``: the run starts from the pretrained weights and keeps their normalization;
    another architecture or a missing directory is refused by name."""
    base = [f"data.root={toy_root}", "data.num_points=64", "val.every=0", "logger=none", "trainer.max_steps=2"]
    first = train(load_config(TINY, [*base, f"run_dir={tmp_path / 'a'}"]), **QUIET)
    pre, pre_norm, _ = GraspGenerator.load_pretrained(first)
    seen = {}

    class _Start(L.Callback):
        def on_train_start(self, trainer, module):
            seen.update({k: v.detach().clone() for k, v in module.model.state_dict().items()})

    train(load_config(TINY, [*base, f"run_dir={tmp_path / 'b'}", f"init_from={first}"]), callbacks=[_Start()], **QUIET)
    for key, value in pre.state_dict().items():
        torch.testing.assert_close(seen[key], value, msg=key)
    x = torch.randn(5, pre_norm.dim, dtype=torch.float64)
    torch.testing.assert_close(
        GraspNormalizer.load(tmp_path / "b" / "normalizer.json").normalize(x), pre_norm.normalize(x)
    )
    with pytest.raises(ValueError, match=r"init_from: .*another model config \(depth: 2 there, 3 here\)"):
        train(load_config(TINY, [*base, f"run_dir={tmp_path / 'c'}", f"init_from={first}", "model.depth=3"]))
    with pytest.raises(ValueError, match=r"init_from: expected '', 'bundled' or a pretrained model directory"):
        load_config(TINY, [*base, f"init_from={tmp_path / 'nothing'}"])
    # "bundled" names the shipped model from any working directory; the tiny config is not its architecture
    with pytest.raises(ValueError, match=r"init_from: .*default_model was trained with another model config"):
        train(load_config(TINY, [*base, f"run_dir={tmp_path / 'd'}", "init_from=bundled"]))


def test_fused_adamw_with_bf16_mixed_and_clipping_trains(toy_root, tmp_path):
    """bf16-mixed + fused AdamW + gradient clipping (the GPU default) works: Lightning's AMP plugin
    refuses to clip for fused optimizers, so the module clips itself. Runs on CPU (bf16 autocast)."""
    run = tmp_path / "run"
    args = ["train", "--config", str(TINY), f"data.root={toy_root}", f"run_dir={run}", "data.num_points=64"]
    extra = ["trainer.precision=bf16-mixed", "optim.fused=true", "optim.grad_clip=0.5", "trainer.max_steps=2"]
    assert main([*args, *extra, "val.every=0", "logger=none"]) == 0
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 2


@pytest.mark.parametrize("crash_at", [3, 7])  # killed after the step-2 (below half) / step-6 (above half) checkpoint
@pytest.mark.usefixtures("one_torch_thread")
def test_resume_at_any_step_gives_bit_identical_weights(toy_root, tmp_path, crash_at):
    over = {
        "trainer.max_steps": 8,
        "trainer.checkpoint_every": 2,
        "val.every": 4,
        "data.batch_size": 2,
        "optim.accumulate": 2,
    }
    full = _Losses()
    train(_cfg(toy_root, tmp_path / "a", **over), callbacks=[full])
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(_cfg(toy_root, tmp_path / "b", **over), callbacks=[_Crash(crash_at)])
    assert load_checkpoint(tmp_path / "b" / "checkpoints" / "last.ckpt")["global_step"] == crash_at - 1
    resumed = _Losses()
    train(_cfg(toy_root, tmp_path / "b", **over), resume=tmp_path / "b", callbacks=[resumed])
    assert resumed.seq == full.seq[(crash_at - 1) * 2 :]  # the same micro-batches, in order, to the last step
    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.ckpt")
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.ckpt")
    assert a["global_step"] == b["global_step"] == 8
    for key, value in a["state_dict"].items():
        assert torch.equal(b["state_dict"][key], value), key
    for key, value in a["ema"]["shadow"].items():
        assert torch.equal(b["ema"]["shadow"][key], value), key


def test_a_wall_clock_budget_advances_the_cosine_schedule(monkeypatch):
    """A run stopped by trainer.max_minutes still ends its cosine at min_lr_ratio: the lr decays by
    whichever runs out first, steps or time (optim.decay_by_time)."""
    from lightning.pytorch.callbacks import Timer

    from sceneleap_core.train.module import budget_fraction
    from sceneleap_core.train.schedule import build_scheduler, set_time_progress, warmup_cosine_factor

    kw = {"warmup_steps": 10, "total_steps": 1000, "min_ratio": 0.05}
    assert warmup_cosine_factor(100, **kw, time_progress=1.0) == pytest.approx(0.05), "time spent: the floor"
    assert warmup_cosine_factor(100, **kw, time_progress=0.0) == pytest.approx(warmup_cosine_factor(100, **kw))
    assert warmup_cosine_factor(5, **kw, time_progress=1.0) == pytest.approx(0.6), "warmup stays by steps"
    half = warmup_cosine_factor(505, **kw)  # half of the steps; time ahead of them wins
    assert warmup_cosine_factor(505, **kw, time_progress=0.75) < half
    assert warmup_cosine_factor(505, **kw, time_progress=0.25) == pytest.approx(half), "steps ahead of time win"

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1.0)
    sched = build_scheduler(opt, "cosine", max_steps=1000, warmup_steps=0, min_lr_ratio=0.05, lr=1.0)
    assert set_time_progress(sched, 1.0)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    one = build_scheduler(opt, "onecycle", max_steps=100, warmup_steps=5, min_lr_ratio=0.05, lr=1.0)
    assert not set_time_progress(one, 0.5), "onecycle has no time notion"

    timer = Timer(duration={"minutes": 10})
    monkeypatch.setattr(timer, "time_elapsed", lambda stage="train": 150.0)
    monkeypatch.setattr(timer, "time_remaining", lambda stage="train": 450.0)

    class _Trainer:
        def __init__(self, callbacks):
            self.callbacks = callbacks

    assert budget_fraction(_Trainer([timer])) == pytest.approx(0.25)
    assert budget_fraction(_Trainer([])) is None
