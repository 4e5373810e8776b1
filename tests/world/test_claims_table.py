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
    def rows(xs):
        return [{"values": {"nscd": table.Interval(x, x, x), "fid": table.Interval(2 * x + 1, 0, 0),
                            "edit_judge": table.Interval(-x * x, 0, 0)}} for x in xs]

    result = table.spearman_across_rows(rows((0.1, 0.3, 0.2, 0.5, 0.4)), ys=("fid", "edit_judge", "keep_judge"))
    assert result["fid"]["rho"] == pytest.approx(1.0) and result["fid"]["n"] == 5
    assert result["edit_judge"]["rho"] == pytest.approx(-1.0)
    assert result["keep_judge"]["rho"] is None and result["keep_judge"]["n"] == 0
    # four rows: a perfect ordering, but too few rows to say anything, so no rho and no p
    few = table.spearman_across_rows(rows((0.1, 0.3, 0.2, 0.5)), ys=("fid",))["fid"]
    assert few["rho"] is None and few["p_value"] is None and few["n"] == 4 and "too few rows" in few["note"]


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


def test_seeds_table_is_mean_and_sd_across_seed_rows():
    import statistics

    rng = np.random.default_rng(2)
    rows = []
    for kind in ("e4e", "lsap"):
        for k in range(3):  # the main row and two further seeds
            per_image = {f"{i}_0": {"mse": float(v), "nscd": float(n)}
                         for i, (v, n) in enumerate(zip(rng.uniform(0, 0.1, 20), rng.uniform(0, 1, 20)))}
            r = row(f"encoder_{kind}" if k == 0 else f"encoder_{kind}_seed{k}", "none", per_image)
            r.update(method=r["embedding"], images=20, lec=float(rng.uniform()), seconds_per_image=0.1 * (k + 1),
                     seed_of=kind if k else None)
            r["values"]["fid"] = table.Interval(float(k), float(k), float(k))
            rows.append(r)
    rows.append({**rows[0], "refinement": "pti", "method": "pti_on_encoder_e4e", "lec": 99.0})  # not a seed row
    seeds = table.seeds_table(rows)
    assert sorted(seeds) == ["e4e", "lsap"]
    for kind, offset in (("e4e", 0), ("lsap", 3)):
        group = rows[offset:offset + 3]
        assert seeds[kind]["n"] == 3 and seeds[kind]["rows"][0] == f"encoder_{kind}"
        for key, pick in (("mse", lambda r: statistics.fmean(v["mse"] for v in r["per_image"].values())),
                          ("nscd", lambda r: statistics.fmean(v["nscd"] for v in r["per_image"].values())),
                          ("lec", lambda r: r["lec"]), ("seconds_per_image", lambda r: r["seconds_per_image"])):
            values = [pick(r) for r in group]
            column = seeds[kind]["columns"][key]
            assert column["mean"] == pytest.approx(statistics.fmean(values))
            assert column["sd"] == pytest.approx(statistics.stdev(values)) and column["n"] == 3
        assert seeds[kind]["columns"]["fid"]["mean"] == pytest.approx(1.0)
        assert seeds[kind]["columns"]["fid"]["sd"] == pytest.approx(1.0)
        assert seeds[kind]["columns"]["keep_judge"] == {"mean": None, "sd": None, "n": 0}
    text = table.markdown(rows, {}, {}, [], {"n": 0}, {}, seeds)
    assert "| encoder_e4e | 3 |" in text and "left out of the method-level Spearman" in text
