"""Sweeps of simulations with the theory beside them: one row per parameter point.

``lora-attn sweep``: the Cartesian product of the ``--vary`` axes (:func:`model.tables.grid`); at every point
the simulation (every observable and its ``_sem``, :meth:`simulate.SimulationResult.row`), the theory
(:meth:`theory.TheoryPoint.row`, warm-started from the previous point), or both side by side (the theory's
columns then named ``<name>_theory``). Every point is checked before any work; the table is rewritten after
every point and a rerun resumes (:func:`model.tables.run_sweep`).
"""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd

import simulate
import theory
from model.params import ParameterError, Params
from model.tables import check_output_path, grid, parse_vary, run_sweep
from simulate.run import sizes


def sweep_table(base: Params, vary: Sequence[str], *, out: str, run_simulation: bool = False,
                run_theory: bool = True, stage: str = "both", bayes: bool | str = False, n_mc: int = 4000,
                D: int | None = None, seeds: int = 2, seed: int = 0, cache_dir: str | None = None,
                executor: Any = None, overwrite: bool = False) -> tuple[pd.DataFrame, int]:
    """The sweep of ``vary`` (``--vary`` strings) around ``base``, written to ``out``: simulations at ``D``
    (``run_simulation``), the theory (``run_theory``), or both side by side.

    ``executor``: where each point's seeds run (:mod:`simulate.executors`; default here).
    ``overwrite``: replace a table at ``out`` that holds another sweep's rows (else refused, before any work).
    Returns the table and the number of its points, resumed ones included, where the theory did not converge
    (``converged = False``).
    Raises :class:`ParameterError` before any work for a bad axis, point, size, output path or theory setting.
    """
    points = grid(base, [parse_vary(v) for v in vary])
    check_output_path(out)
    if run_simulation:
        if D is None:
            raise ParameterError("sweep --simulate needs --D N (allowed an integer D ≥ 2)")
        for p in points:
            sizes(p, D)
    if run_theory:
        if stage == "finetune":
            raise ParameterError("sweep --stage: allowed 'both' or 'pretrain' (fine-tuning alone needs measured "
                                 "pre-training order parameters: lora-attn theory --stage finetune)")
        for p in points:
            theory.check(p, stage=stage, n_mc=n_mc, bayes=bayes)

    def point(p: Params, warm: Any) -> tuple[dict[str, Any], Any]:
        row: dict[str, Any] = {}
        if run_simulation:
            row.update(simulate.run(p, D, seeds, seed=seed, cache_dir=cache_dir, executor=executor).row())
        if not run_theory:
            return row, None
        t = theory.solve(p, init=warm, stage=stage, bayes=bayes, n_mc=n_mc)
        trow = {k: v for k, v in t.row().items() if k not in p.to_dict()}
        if run_simulation:  # side by side: simulation under the plain names, theory as NAME_theory
            trow = {f"{k}_theory": v for k, v in trow.items()}
        row.update(trow)
        return row, t.warm

    extra: dict[str, Any] = {}
    if run_simulation:
        extra.update({"D": D, "seeds": seeds})
    if run_theory:
        extra.update({"stage": stage, "n_mc": n_mc, "bayes": theory.bayes_label(bayes)})
    table = run_sweep(points, point, out=out, extra_columns=extra, overwrite=overwrite)
    return table, _not_converged(table, "converged_theory" if run_simulation else "converged") if run_theory else 0


def _not_converged(table: pd.DataFrame, column: str) -> int:
    """Rows whose ``column`` is not true (a resumed CSV reads it back as ``True``/``False`` or their text)."""
    if column not in table.columns:
        return 0
    return int(sum(not (v is True or v == 1 or str(v) == "True") for v in table[column]))
