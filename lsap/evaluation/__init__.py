"""``lsap evaluate`` / ``lsap fid`` / ``lsap compare``: the evaluation table of inversion results.

:class:`EvaluationOptions` describes the options once (Python and the command line);
:class:`EvaluationRun` is a results folder paired with its inputs, loaded once; the metric
families are the evaluators of :mod:`lsap.evaluation.evaluators`. Imports are lazy so that
``lsap --help`` does not load torch through this package.
"""

from __future__ import annotations

from lsap._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    ".pipeline": ("evaluate", "evaluate_run"), ".fid": ("folder_fid",), ".report": ("compare_table", "read_metrics"),
    ".options": ("EvaluationOptions",), ".run": ("EvaluationRun",),
})
