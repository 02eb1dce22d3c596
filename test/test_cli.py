import subprocess
import sys

from sceneleap_core import __version__
from sceneleap_core.cli import main


def test_version_and_help():
    out = subprocess.run([sys.executable, "-m", "sceneleap_core.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and __version__ in out.stdout
    out = subprocess.run([sys.executable, "-m", "sceneleap_core.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "hand" in out.stdout


def test_hand_info_and_draw(tmp_path, capsys):
    assert main(["hand", "info"]) == 0
    assert "16 joints" in capsys.readouterr().out
    out = tmp_path / "hand.png"
    q = "0 0.9 0.7 0.6 0 0.9 0.7 0.6 0 0.9 0.7 0.6 1.3 0.5 0.4 0.4"
    assert main(["hand", "draw", "--q", q, "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000


def test_hand_draw_bad_joints_is_a_clear_error(tmp_path, capsys):
    assert main(["hand", "draw", "--q", "1 2 3", "--out", str(tmp_path / "x.png")]) == 2
    assert "expected 16 joint angles, got 3" in capsys.readouterr().err
    assert main(["hand", "draw", "--q", " ".join(["5"] * 16), "--out", str(tmp_path / "x.png")]) == 2
    assert "outside its limits" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_model_pack_records_the_deployed_sampler_and_rejects_an_unknown_one(tmp_path, capsys):
    import json

    import torch

    from sceneleap_core.models import GraspGenerator, build_generator

    torch.manual_seed(0)
    build_generator("tiny", anchor="seed").save_pretrained(tmp_path / "run")
    assert main(["model", "pack", str(tmp_path / "run"), "--out", str(tmp_path / "packed"), "--sampler", "ddim"]) == 0
    assert json.loads((tmp_path / "packed" / "config.json").read_text())["config"]["sampler"] == "ddim"
    assert GraspGenerator.load_pretrained(tmp_path / "packed")[0].default_sampler == "ddim"
    from sceneleap_core.infer.ranker import RANKER_NAME, GraspRanker

    GraspRanker(["total"], [0.0], [1.0], [-1.0], 0.0, {"note": "kept"}).save(tmp_path / "run" / RANKER_NAME)
    assert main(["model", "pack", str(tmp_path / "run"), "--out", str(tmp_path / "other")]) == 0
    assert GraspGenerator.load_pretrained(tmp_path / "other")[0].default_sampler == "dpmpp"  # the source's
    assert GraspRanker.load(tmp_path / "other" / RANKER_NAME).info == {"note": "kept"}, "the ranker travels along"
    capsys.readouterr()
    assert main(["model", "pack", str(tmp_path / "run"), "--out", str(tmp_path / "bad"), "--sampler", "fast"]) == 2
    assert "sampler" in capsys.readouterr().err and not (tmp_path / "bad" / "config.json").exists()


def test_model_pack_records_the_planners_oversampling_and_the_planner_reads_it(tmp_path, capsys, caplog):
    from _infer_common import save_tiny

    from sceneleap_core.infer import GraspPlanner

    run = save_tiny(tmp_path / "run")
    assert GraspPlanner.from_pretrained(run).oversample == 2.0  # the planner's own default
    assert main(["model", "pack", str(run), "--out", str(tmp_path / "x4"), "--oversample", "4"]) == 0
    assert GraspPlanner.from_pretrained(tmp_path / "x4").oversample == 4.0
    assert GraspPlanner.from_pretrained(tmp_path / "x4", oversample=1.5).oversample == 1.5  # a caller's wins
    assert main(["model", "pack", str(tmp_path / "x4"), "--out", str(tmp_path / "again")]) == 0
    assert GraspPlanner.from_pretrained(tmp_path / "again").oversample == 4.0, "kept by a later pack"
    capsys.readouterr()
    assert main(["model", "pack", str(run), "--out", str(tmp_path / "bad"), "--oversample", "0.5"]) == 2
    assert "--oversample: expected >= 1" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    assert GraspPlanner.from_pretrained(run).temperature == 1.0  # the trained prior unless recorded
    assert main(["model", "pack", str(tmp_path / "x4"), "--out", str(tmp_path / "t05"), "--temperature", "0.5"]) == 0
    packed = GraspPlanner.from_pretrained(tmp_path / "t05")
    assert (packed.temperature, packed.oversample) == (0.5, 4.0)  # both recorded
    assert GraspPlanner.from_pretrained(tmp_path / "t05", temperature=1.0).temperature == 1.0
    capsys.readouterr()
    assert main(["model", "pack", str(run), "--out", str(tmp_path / "bad"), "--temperature", "-1"]) == 2
    assert "temperature" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    assert GraspPlanner.from_pretrained(run).guidance == 1.0  # conditional only unless recorded
    assert main(["model", "pack", str(tmp_path / "t05"), "--out", str(tmp_path / "g13"), "--guidance", "1.3"]) == 0
    packed = GraspPlanner.from_pretrained(tmp_path / "g13")
    assert (packed.guidance, packed.temperature, packed.oversample) == (1.3, 0.5, 4.0)
    assert GraspPlanner.from_pretrained(tmp_path / "g13", guidance=1.0).guidance == 1.0
    with caplog.at_level("WARNING", logger="sceneleap_core.infer.planner"):  # ONNX: the conditional network only
        assert GraspPlanner.from_pretrained(tmp_path / "g13", backend="onnx").guidance == 1.0
    assert "conditional network only" in caplog.text
    capsys.readouterr()
    assert main(["model", "pack", str(run), "--out", str(tmp_path / "bad"), "--guidance", "nan"]) == 2
    assert "guidance" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_model_pack_records_post_processing_defaults_and_the_planner_reads_them(tmp_path, capsys):
    from _infer_common import save_tiny

    from sceneleap_core.infer import GraspPlanner
    from sceneleap_core.infer.postprocess import PostConfig

    run = save_tiny(tmp_path / "run")
    assert GraspPlanner.from_pretrained(run).post == PostConfig()
    args = [
        "--post",
        "clearance=candidates",
        "--post",
        "clearance_tolerance=0.001",
        "--post",
        "clearance_levels=0,0.05",
    ]
    assert main(["model", "pack", str(run), "--out", str(tmp_path / "c"), *args]) == 0
    post = GraspPlanner.from_pretrained(tmp_path / "c").post
    assert (post.clearance, post.clearance_tolerance, post.clearance_levels) == ("candidates", 0.001, (0.0, 0.05))
    assert post.grasp_tolerance == PostConfig().grasp_tolerance, "fields not given keep their defaults"
    mine = PostConfig(diversity=0.0)
    assert GraspPlanner.from_pretrained(tmp_path / "c", post=mine).post is mine, "a caller's wins"
    assert main(["model", "pack", str(tmp_path / "c"), "--out", str(tmp_path / "d"), "--post", "diversity=0.05"]) == 0
    post = GraspPlanner.from_pretrained(tmp_path / "d").post
    assert (post.clearance, post.diversity) == ("candidates", 0.05), "merged into the source's"
    capsys.readouterr()
    for bad, why in (("clearance=always", "clearance"), ("clearence=off", "KEY=VALUE"), ("min_hits=x", "int")):
        assert main(["model", "pack", str(run), "--out", str(tmp_path / "bad"), "--post", bad]) == 2
        assert why in capsys.readouterr().err and not (tmp_path / "bad").exists()
