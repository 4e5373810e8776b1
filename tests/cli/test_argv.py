"""Shell-style lists folded into the JSON values jsonargparse reads."""

from __future__ import annotations

import json

from lsap.argv import fold_list_options, fold_positionals, underscore_options


def test_list_options_take_space_separated_values() -> None:
    argv = ["RESULTS", "--strengths", "-3", "0", "2.5", "--direction", "a.pt", "b.pt", "--output", "out"]
    folded = fold_list_options(argv, {"strengths": float, "direction": str})
    assert folded == ["RESULTS", "--strengths=[-3.0, 0.0, 2.5]", '--direction=["a.pt", "b.pt"]', "--output", "out"]


def test_an_option_without_values_is_left_for_the_parser_to_reject() -> None:
    assert fold_list_options(["--strengths", "--output", "x"], {"strengths": float}) == ["--strengths", "--output", "x"]


def test_positionals_become_one_list_and_options_stay() -> None:
    folded = fold_positionals(["run a", "run_b", "--device", "cpu"])
    assert json.loads(folded[0]) == ["run a", "run_b"] and folded[1:] == ["--device", "cpu"]
    assert fold_positionals(["[x, y]"]) == ["[x, y]"]
    assert fold_positionals(["--help"]) == ["--help"]


def test_dashed_option_names_are_accepted_and_values_kept() -> None:
    argv = ["real-dir", "--batch-size", "8", "--real-stats=a-b.npz", "-3", "--x"]
    assert underscore_options(argv) == ["real-dir", "--batch_size", "8", "--real_stats=a-b.npz", "-3", "--x"]
