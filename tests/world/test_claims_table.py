"""bench/claims_table.py: the two-stage claims table's statistics, on made-up rows."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import load_bench_script
from lsap.metrics.bootstrap import bootstrap_mean

table = load_bench_script("claims_table")


def row(embedding: str, refinement: str, per_image: dict, per_edit: dict | None = None) -> dict:
    per_edit = per_edit or {}
    return {"embedding": embedding, "refinement": refinement, "per_image": per_image, "per_edit": per_edit,
            "values": table.row_intervals(per_image, per_edit, resamples=200, seed=0)}


def test_pivot_effect_is_the_paired_difference_over_common_images():
    rng = np.random.default_rng(0)
    names = [f"{i:04d}_0" for i in range(100)]
    base = {n: {"mse": float(v), "nscd": 0.2} for n, v in zip(names, rng.uniform(0.05, 0.1, 100))}
    lsap = {n: {"mse": base[n]["mse"] + 0.01, "nscd": 0.05} for n in names[:80]}  # 80 images in common
    rows = [row("encoder_e4e", "none", base), row("encoder_lsap", "none", lsap),
            row("encoder_e4e", "pti", base)]  # no LSAP row under PTI: no effect there
    effects = table.pivot_effects(rows, table.PIVOT_PAIRS, resamples=200, seed=0)
    assert len(effects) == 1
    effect = effects[0]
    assert (effect["refinement"], effect["lsap"], effect["baseline"]) == ("none", "encoder_lsap", "encoder_e4e")
    assert effect["mse"].value == pytest.approx(0.01) and effect["mse"].n == 80
    assert effect["nscd"].value == pytest.approx(-0.15)
    assert effect["keep_judge"] is None  # no such values


def test_row_intervals_use_images_or_image_edit_pairs():
    per_image = {f"{i}_7": {"mse": 0.1 * (i % 3), "keep_judge": float(i % 2)} for i in range(50)}
    per_edit = {f"{i}_7|sneaker_to_boot": {"edit_judge": float(i % 4 == 0)} for i in range(40)}
    values = table.row_intervals(per_image, per_edit, resamples=200, seed=0)
    assert values["keep_judge"].value == pytest.approx(0.5) and values["keep_judge"].n == 50
    assert values["edit_judge"].value == pytest.approx(0.25) and values["edit_judge"].n == 40
    assert values["nscd"] is None
    expected = bootstrap_mean([v["mse"] for v in per_image.values()], resamples=200, seed=0)
    assert (values["mse"].low, values["mse"].high) == (expected.low, expected.high)


def test_spearman_across_rows_counts_rows():
    rows = [{"values": {"nscd": table.Interval(x, x, x), "fid": table.Interval(2 * x + 1, 0, 0)}}
            for x in (0.1, 0.3, 0.2, 0.5)]
    result = table.spearman_across_rows(rows, ys=("fid", "keep_judge"))
    assert result["fid"]["rho"] == pytest.approx(1.0) and result["fid"]["n"] == 4
    assert result["keep_judge"]["rho"] is None and result["keep_judge"]["n"] == 0


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_a_shift():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(400, 8))
    assert table.frechet_distance(real, real) == pytest.approx(0.0, abs=1e-6)
    shifted = table.fid_interval(real, real + 1.0, resamples=30)
    assert shifted.value == pytest.approx(8.0, rel=1e-6)  # |mean shift|^2, equal covariances
    assert shifted.low <= shifted.value <= shifted.high


def test_cells_show_intervals():
    assert table.cell(table.Interval(0.5, 0.4, 0.6), 2) == "0.50 [0.40, 0.60]"
    assert table.cell(None, 2) == "–"
