"""benchmarks.gpu_prepare: what is downloaded for the GPU machine, what is not carried, and the
device commands (the downloads themselves need the registry: not run in CI)."""

from __future__ import annotations

import json
import subprocess
import sys

from benchmarks import gpu_prepare


def test_probe_runs_with_the_stdlib_as_a_script_and_lists_installed_distributions():
    out = subprocess.run([sys.executable, "-S", "-c", "import runpy, sys; sys.argv = ['x', '--probe']; "
                          f"runpy.run_path({str(gpu_prepare.__file__)!r}, run_name='__main__')"],
                         capture_output=True, text=True, check=False)
    # -S: no site-packages, as on a bare interpreter; the probe still answers
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    assert record["python"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert "numpy" in gpu_prepare.probe()["installed"]


def test_prepare_downloads_for_the_probed_python_and_drops_what_the_machine_has(tmp_path):
    commands = []

    def fake_run(command, check):
        commands.append(command)
        if "download" in command and "--no-deps" not in command:
            for name in ("onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_27_x86_64.whl", "diffusers-0.42.1-py3-none-any.whl",
                         "numpy-2.3.0-cp312-cp312-manylinux_2_28_x86_64.whl", "torch-2.11.0-cp312-none-any.whl",
                         "Typing_Extensions-4.15.0-py3-none-any.whl"):
                (tmp_path / name).write_bytes(b"x")
        else:
            (tmp_path / "sana_edge-0.1.0-py3-none-any.whl").write_bytes(b"x")

    probe = {"python": "3.12", "installed": {"numpy": "2.3.0", "typing-extensions": "4.15.0", "sana-edge": "0.0.1"}}
    dropped = gpu_prepare.prepare(probe, tmp_path, run=fake_run)
    assert commands[0][commands[0].index("--python-version") + 1] == "312"
    assert "--no-deps" in commands[0] and "onnxruntime-gpu==1.31.1" in commands[0] and "bitsandbytes==0.50.2" in commands[0]
    assert "diffusers==0.42.1" in commands[1] and "--no-deps" not in commands[1], "light requirements bring their deps"
    assert "bitsandbytes==0.50.2" not in commands[1], "bitsandbytes' torch dependency would pull GBs of CUDA wheels"
    assert "--no-deps" in commands[2] and "wheel" in commands[2]
    assert sorted(w.name.split("-")[0] for w in dropped) == ["Typing_Extensions", "numpy", "torch"]
    kept = sorted(p.name.split("-")[0] for p in tmp_path.glob("*.whl"))
    assert kept == ["diffusers", "onnxruntime_gpu", "sana_edge"], "our wheel and onnxruntime-gpu always travel"


def test_device_commands_carry_each_part_and_install_on_the_last():
    lines = gpu_prepare.device_commands(3)
    assert [f'.whlparts/{k}' in line for k, line in zip((1, 2, 3), lines)] == [True, True, True]
    assert "pip install" not in lines[0] and "pip install" in lines[2]
    assert "sana_edge.benchmarks.gpu_suite" in lines[2] and "sana_edge.benchmarks.gpu_suite" in lines[3]
