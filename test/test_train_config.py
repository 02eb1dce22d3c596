"""Training configs: YAML composition, command-line overrides, and errors that name the key."""

import importlib.util
from pathlib import Path

import pytest

from sceneleap_core.cli import main
from sceneleap_core.train.config import load_config

CONFIG = Path(__file__).resolve().parents[1] / "config" / "train"


def test_yaml_files_compose_with_overrides():
    cfg = load_config(CONFIG / "default.yaml")
    assert cfg.model_preset == "dit_s" and cfg.data.num_grasps == 64 and cfg.trainer.precision == "auto"
    tiny = load_config(CONFIG / "tiny.yaml", ["trainer.max_steps=7", "model.depth=3", "data.augment.max_angle=0.5"])
    # tiny.yaml includes default.yaml, then overrides a few keys
    assert tiny.model_preset == "tiny" and tiny.model.d_model == 32  # from the tiny preset
    assert tiny.model.depth == 3 and tiny.trainer.max_steps == 7 and tiny.data.augment.max_angle == 0.5
    assert tiny.optim.schedule == "cosine" and tiny.data.augment.dropout_radius == 0.02  # inherited
    assert tiny.data.val_root is None and tiny.trainer.accelerator == "cpu"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.max_stepz=3", r"trainer\.max_stepz: unknown key.*did you mean 'trainer\.max_steps'"),
        ("model.dpth=2", r"model\.dpth: unknown key.*did you mean 'model\.depth'"),
        ("trainer.max_steps=abc", r"trainer\.max_steps: invalid value.*'abc'"),
        ("data.augment.jitter_sigma=big", r"data\.augment\.jitter_sigma: invalid value"),
        ("data.num_points=0", r"data\.num_points: expected an int >= 16, got 0"),
        ("optim.schedule=linear", r"optim\.schedule: expected one of .*got 'linear'"),
        ("ema.decay=1.5", r"ema\.decay: expected a decay in \(0, 1\), got 1\.5"),
        ("trainer.precision=fp8", r"trainer\.precision: expected one of"),
        ("model.depth=0", r"model\.depth: expected a positive int, got 0"),
        ("model.d_model=33", r"model\.d_model: expected a multiple of heads"),
        ("model_preset=huge", r"model_preset: expected one of .*got 'huge'"),
        ("logger=tensorboard,mlflow", r"logger: expected a comma list"),
        ("val.evaluator=not_a_spec", r"val\.evaluator: expected a registered evaluator \(sim_lift\)"),
        (
            "val.evaluator=os:system",
            r"val\.evaluator: expected .*'sceneleap_core\.<module>:<factory>', got 'os:system'",
        ),
        ("data.frame=world", r"data\.frame: expected one of .*got 'world'"),
        ("data.train_samples=-1", r"data\.train_samples: expected an int >= 0"),
        ("trainer.max_minutes=-2", r"trainer\.max_minutes: expected a number >= 0"),
        ("optim.lr=inf", r"optim\.lr: expected a finite number, got inf"),
        ("aux_weight=inf", r"aux_weight: expected a finite number, got inf"),
        ("data.augment.jitter_sigma=nan", r"data\.augment\.jitter_sigma: expected a finite number, got nan"),
        ("seed=-1", r"seed: expected an int >= 0, got -1"),
        ("val.temperature=-0.5", r"val\.temperature: expected a number >= 0"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(CONFIG / "default.yaml", [override])


def test_errors_in_a_yaml_file_name_the_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("defaults: [" + str(CONFIG / "tiny.yaml") + "]\ndata:\n  num_pointz: 12\n")
    with pytest.raises(ValueError, match=r"data\.num_pointz: unknown key \(in .*bad\.yaml\).*data\.num_points"):
        load_config(bad)
    with pytest.raises(ValueError, match=r"--config: expected an existing YAML file"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match=r"expected key=value"):
        load_config(CONFIG / "tiny.yaml", ["trainer.max_steps"])


def test_cli_reports_config_errors_before_training(tmp_path, capsys):
    code = main(["train", "--config", str(CONFIG / "tiny.yaml"), f"run_dir={tmp_path / 'r'}", "optim.lr=-1"])
    assert code == 2
    assert "optim.lr: expected a learning rate > 0, got -1" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    assert main(["train", "--config", str(CONFIG / "tiny.yaml"), "--print-config", "model.depth=5"]) == 0
    assert "depth: 5" in capsys.readouterr().out


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed")
def test_wandb_logger_without_wandb_is_a_clear_error(tmp_path):
    from sceneleap_core.train.runner import build_loggers

    cfg = load_config(CONFIG / "tiny.yaml", ["logger=wandb"])
    with pytest.raises(ValueError, match=r"logger: 'wandb' needs the wandb package"):
        build_loggers(cfg, tmp_path)


def test_val_evaluator_is_a_registered_name_or_inside_the_package():
    from sceneleap_core.train.config import evaluator_target
    from sceneleap_core.train.metrics import load_evaluator

    cfg = load_config(CONFIG / "default.yaml", ["val.evaluator=sim_lift"])
    assert evaluator_target(cfg.val.evaluator) == "sceneleap_core.train.sim_validation:lift_evaluator"
    spec = "sceneleap_core.train.sim_validation:lift_evaluator"
    assert load_config(CONFIG / "default.yaml", [f"val.evaluator={spec}"]).val.evaluator == spec
    for bad in ("os:system", "sceneleap_core_evil.x:y", "sceneleap_core.train:os.system"):
        with pytest.raises(ValueError, match=r"val\.evaluator: expected a registered evaluator"):
            load_evaluator(bad, cfg)  # also what a resumed run's saved config goes through
