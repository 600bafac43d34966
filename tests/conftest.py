"""Shared fixtures: one tiny random-weight SANA checkpoint and its fp32 export per test session."""

from __future__ import annotations

import os
import tempfile

import pytest


def pytest_configure(config):
    # The suite's caches (digests, optimized graphs, engines, the built-in export) go to a fresh
    # folder, never the user's ~/.cache/sana-edge; subprocesses inherit it.
    os.environ["SANA_EDGE_CACHE"] = tempfile.mkdtemp(prefix="sana-edge-test-cache-")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    from sana_edge.export.tiny import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-sana", seed=0)


def _fp32_export(checkpoint, tmp_path_factory, name):
    from sana_edge.export.exporter import ExportOptions, export_checkpoint

    out = tmp_path_factory.mktemp("export") / name
    return export_checkpoint(ExportOptions(str(checkpoint), out), log=lambda _: None)


def _diffusers(checkpoint):
    from sana_edge.export.checkpoint import load_sana_pipeline

    return load_sana_pipeline(checkpoint)


@pytest.fixture(scope="session")
def tiny_export(tiny_checkpoint, tmp_path_factory):
    return _fp32_export(tiny_checkpoint, tmp_path_factory, "tiny-fp32")


@pytest.fixture(scope="session")
def tiny_single_export(tiny_checkpoint, tmp_path_factory):
    """The same checkpoint with the transformer as one graph (optimum-onnx's layout, older exports)."""
    from sana_edge.export.exporter import ExportOptions, export_checkpoint

    out = tmp_path_factory.mktemp("single") / "tiny-single"
    return export_checkpoint(ExportOptions(str(tiny_checkpoint), out, split_transformer=False), log=lambda _: None)


@pytest.fixture(scope="session")
def diffusers_pipe(tiny_checkpoint):
    return _diffusers(tiny_checkpoint)


@pytest.fixture(scope="session")
def sprint_checkpoint(diffusers_pipe, tmp_path_factory):
    """A tiny random Sana-Sprint checkpoint (sprint-0.6b's settings) over the tiny model's parts."""
    from sana_edge.export.tiny import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-sprint", variant="sprint-0.6b",
                                 base=diffusers_pipe)


@pytest.fixture(scope="session")
def sprint_export(sprint_checkpoint, tmp_path_factory):
    return _fp32_export(sprint_checkpoint, tmp_path_factory, "tiny-sprint-fp32")


@pytest.fixture(scope="session")
def sprint_pipe(sprint_checkpoint):
    return _diffusers(sprint_checkpoint)


@pytest.fixture(scope="session")
def controlnet_dir(diffusers_pipe, tmp_path_factory):
    """A tiny random SanaControlNetModel folder for the tiny model's transformer."""
    from sana_edge.export.variants import tiny_controlnet

    out = tmp_path_factory.mktemp("ckpt") / "tiny-controlnet"
    tiny_controlnet(diffusers_pipe.transformer).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def controlnet_export(tiny_checkpoint, controlnet_dir, tmp_path_factory):
    from sana_edge.cli import main

    out = tmp_path_factory.mktemp("export") / "tiny-controlnet-fp32"
    assert main(["export", str(tiny_checkpoint), "--controlnet", str(controlnet_dir), "-o", str(out)]) == 0
    return out


@pytest.fixture
def sandbox(tmp_path):
    """A working folder and a cache folder for one CLI test (cli_runner.Sandbox)."""
    from cli_runner import Sandbox

    return Sandbox(tmp_path)
