"""The CPU's instruction set decides the fastest precision; `doctor`, `export --precision auto`
and `run`'s advice all read it."""

from __future__ import annotations

from sana_edge.cpu import CpuFeatures, cpu_features, fastest_precision, precision_advice

AVX2 = CpuFeatures(frozenset({"avx", "avx2", "fma"}))
VNNI = CpuFeatures(frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}))


def test_int8_only_where_the_cpu_has_8_bit_dot_products():
    assert fastest_precision(AVX2) == "fp32" and fastest_precision(VNNI) == "int8"
    assert fastest_precision(CpuFeatures(frozenset({"avx2", "avx_vnni"}))) == "int8"
    assert VNNI.describe() == "AVX2, AVX-512, VNNI, AVX-512 BF16" and VNNI.bf16 and not AVX2.bf16


def test_advice_names_the_missing_instructions_and_stays_quiet_otherwise():
    assert "VNNI" in precision_advice("int8", AVX2) and "memory, not time" in precision_advice("int4", AVX2)
    assert precision_advice("int8", VNNI) is None and precision_advice("fp32", AVX2) is None
    assert precision_advice("int8", CpuFeatures(frozenset(), known=False)) is None


def test_this_machine_is_described():
    features = cpu_features()
    assert features.describe() and fastest_precision(features) in ("fp32", "int8")


def test_export_precision_auto_picks_the_fastest_for_this_cpu(tiny_checkpoint, tmp_path, capsys):
    from sana_edge.cli import main
    from sana_edge.manifest import load_manifest

    assert main(["export", str(tiny_checkpoint), "-o", str(tmp_path / "auto"), "--precision", "auto"]) == 0
    assert load_manifest(tmp_path / "auto").precision == fastest_precision()
    assert f"precision auto: {fastest_precision()}" in capsys.readouterr().out
