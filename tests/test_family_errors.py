"""Bad input for the SANA family options: one-line error naming the problem and the fix, exit 2,
nothing written (image-to-image, ControlNet, Sana-Sprint options, unsupported architectures)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from sana_edge.cli import main


def _run(capsys, *args):
    code = main(list(map(str, args)))
    return code, capsys.readouterr().err.strip()


def _one_line(code, err, *needles):
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    for needle in needles:
        assert needle in err, err


def _image(path, width, height):
    from PIL import Image

    Image.fromarray(np.full((height, width, 3), 128, np.uint8)).save(path)
    return path


@pytest.mark.parametrize("strength", ["0", "-0.1", "1.5", "nan"])
def test_strength_outside_range(capsys, tiny_export, tmp_path, strength):
    image = _image(tmp_path / "in.png", 64, 64)
    code, err = _run(capsys, "run", "a fox", "-m", tiny_export, "-o", tmp_path / "o.png", "--image", image,
                     "--strength", strength)
    _one_line(code, err, "--strength", "(0, 1]")
    assert not (tmp_path / "o.png").exists()


def test_strength_without_image(capsys, tiny_export, tmp_path):
    code, err = _run(capsys, "run", "a fox", "-m", tiny_export, "-o", tmp_path / "o.png", "--strength", "0.5")
    _one_line(code, err, "--strength", "--image")


def test_input_that_is_not_an_image(capsys, tiny_export, tmp_path):
    (tmp_path / "notes.png").write_text("not a picture")
    for option in ("--image", "--control-image"):
        code, err = _run(capsys, "run", "a fox", "-m", tiny_export, "-o", tmp_path / "o.png", option, tmp_path / "notes.png")
        if option == "--image":
            _one_line(code, err, "--image", "not an image")
        else:
            _one_line(code, err, "--control-image", "controlnet")  # refused first: no controlnet in this export
    code, err = _run(capsys, "run", "a fox", "-m", tiny_export, "-o", tmp_path / "o.png", "--image", tmp_path / "none.png")
    _one_line(code, err, "does not exist")
    assert not (tmp_path / "o.png").exists()


def test_image_size_not_a_multiple_of_32_is_refused_unless_resized(capsys, tiny_export, tmp_path):
    from PIL import Image

    image = _image(tmp_path / "odd.png", 100, 70)
    code, err = _run(capsys, "run", "a fox", "-m", tiny_export, "-o", tmp_path / "o.png", "--image", image)
    _one_line(code, err, "100x70", "--width 96 --height 64")
    code, err = _run(capsys, "run", "a fox", "-m", tiny_export, "-o", tmp_path / "o.png", "--image", image,
                     "--width", "96", "--height", "64", "--steps", "2", "--seed", "0")
    assert code == 0, err
    with Image.open(tmp_path / "o.png") as out:
        assert out.size == (96, 64)


def test_control_image_on_an_export_without_controlnet(capsys, tiny_export, tmp_path):
    image = _image(tmp_path / "edges.png", 64, 64)
    code, err = _run(capsys, "run", "a fox", "-m", tiny_export, "-o", tmp_path / "o.png", "--control-image", image)
    _one_line(code, err, "--control-image", "--controlnet")


def test_sprint_refuses_flow_dpm_solver_options(capsys, sprint_export, tiny_export, tmp_path):
    out = tmp_path / "o.png"
    code, err = _run(capsys, "run", "a fox", "-m", sprint_export, "-o", out, "--negative-prompt", "blurry")
    _one_line(code, err, "negative prompt", "Sana-Sprint")
    np.save(tmp_path / "noise.npy", np.zeros((1, 1, 32, 2, 2), np.float32))
    code, err = _run(capsys, "run", "a fox", "-m", tiny_export, "-o", out, "--step-noise", tmp_path / "noise.npy")
    _one_line(code, err, "--step-noise", "Sana-Sprint")
    code, err = _run(capsys, "run", "a fox", "-m", tiny_export, "-o", out, "--timesteps", "1.5,0")
    _one_line(code, err, "--timesteps", "Sana-Sprint")
    code, err = _run(capsys, "run", "a fox", "-m", sprint_export, "-o", out, "--height", "64", "--width", "64",
                     "--steps", "3", "--step-noise", tmp_path / "noise.npy")
    _one_line(code, err, "--step-noise", "(2, 1, 32, 2, 2)")
    code, err = _run(capsys, "run", "a fox", "-m", sprint_export, "-o", out, "--steps", "2", "--timesteps", "1.5,x,0")
    _one_line(code, err, "--timesteps", "comma-separated")
    assert not out.exists()


def _edited_checkpoint(source, tmp_path, folder, **changes):
    target = tmp_path / "edited"
    shutil.copytree(source, target)
    config_file = target / folder / ("scheduler_config.json" if folder == "scheduler" else "config.json")
    config = json.loads(config_file.read_text())
    config.update(changes)
    config_file.write_text(json.dumps(config))
    return target


@pytest.mark.parametrize("folder,changes,needle", [
    ("scheduler", {"_class_name": "DPMSolverMultistepScheduler", "use_flow_sigmas": True}, "Sana-Sprint checkpoint with scheduler"),
    ("transformer", {"patch_size": 2}, "patch_size=2"),
    ("transformer", {"qk_norm": "layer_norm"}, "qk_norm='layer_norm'"),
    ("transformer", {"guidance_embeds": False}, "guidance_embeds=False"),
    ("transformer", {"rope_theta": 10000}, "rope_theta"),
])
def test_unsupported_sprint_architecture_is_refused_at_export(capsys, sprint_checkpoint, tmp_path, folder, changes, needle):
    checkpoint = _edited_checkpoint(sprint_checkpoint, tmp_path, folder, **changes)
    code, err = _run(capsys, "export", checkpoint, "-o", tmp_path / "out")
    _one_line(code, err, "unsupported architecture", needle)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("folder,changes,needle", [
    ("transformer", {"guidance_embeds": True}, "guidance_embeds=True"),
    ("transformer", {"out_channels": 48}, "out_channels=48"),
    ("scheduler", {"_class_name": "FlowMatchEulerDiscreteScheduler"}, "FlowMatchEulerDiscreteScheduler"),
])
def test_unsupported_sana_architecture_is_refused_at_export(capsys, tiny_checkpoint, tmp_path, folder, changes, needle):
    checkpoint = _edited_checkpoint(tiny_checkpoint, tmp_path, folder, **changes)
    code, err = _run(capsys, "export", checkpoint, "-o", tmp_path / "out")
    _one_line(code, err, "unsupported architecture", needle)
    assert not (tmp_path / "out").exists()


def test_controlnet_that_does_not_fit_is_refused(capsys, tiny_checkpoint, sprint_checkpoint, controlnet_dir, tmp_path):
    code, err = _run(capsys, "export", sprint_checkpoint, "--controlnet", controlnet_dir, "-o", tmp_path / "out")
    _one_line(code, err, "controlnet on a Sana-Sprint checkpoint")
    wide = _edited_checkpoint(controlnet_dir, tmp_path, ".", num_attention_heads=4)
    code, err = _run(capsys, "export", tiny_checkpoint, "--controlnet", wide, "-o", tmp_path / "out")
    _one_line(code, err, "controlnet width=32", "16")
    code, err = _run(capsys, "export", tiny_checkpoint, "--controlnet", tmp_path / "missing", "-o", tmp_path / "out")
    _one_line(code, err, "--controlnet", "not a folder")
    assert not (tmp_path / "out").exists()
