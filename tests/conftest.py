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


@pytest.fixture(scope="session")
def tiny_export(tiny_checkpoint, tmp_path_factory):
    from sana_edge.export.exporter import ExportOptions, export_checkpoint

    out = tmp_path_factory.mktemp("export") / "tiny-fp32"
    return export_checkpoint(ExportOptions(str(tiny_checkpoint), out), log=lambda _: None)


@pytest.fixture(scope="session")
def tiny_single_export(tiny_checkpoint, tmp_path_factory):
    """The same checkpoint with the transformer as one graph (optimum-onnx's layout, older exports)."""
    from sana_edge.export.exporter import ExportOptions, export_checkpoint

    out = tmp_path_factory.mktemp("single") / "tiny-single"
    return export_checkpoint(ExportOptions(str(tiny_checkpoint), out, split_transformer=False), log=lambda _: None)


@pytest.fixture(scope="session")
def diffusers_pipe(tiny_checkpoint):
    from sana_edge.export.checkpoint import load_sana_pipeline

    return load_sana_pipeline(tiny_checkpoint)
