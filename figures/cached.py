"""Cached theory computations of the prescription figures (:mod:`figures.phase_diagram`, :mod:`figures.prescriptions`).

Each computation is stored as one JSON file in the figures' point cache (:class:`figures.compute.PointCache`,
``<out>/cache/points``), keyed by a kind, the parameters and the settings that determine it, so a rerun
computes only what changed and an interrupted run resumes.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

import theory
from model.params import Params
from theory.states import PretrainState

#: Bump a kind's number when a change of the code changes its cached numbers.
VERSIONS = {"pretrain": 1, "finetune": 1, "switch_off": 1, "bayes_alpha_c": 1, "optimize": 1}


class Cached:
    """``(kind, params, settings) → dict`` through a :class:`figures.compute.PointCache` in ``directory``,
    printing one progress line per computed (not cached) entry on stderr."""

    def __init__(self, directory: str | Path, label: str):
        from figures.compute import PointCache

        self.cache = PointCache(Path(directory))
        self.label = label

    def __call__(self, kind: str, params: Params, settings: dict[str, Any], compute: Callable[[], dict[str, Any]]
                 ) -> dict[str, Any]:
        from figures.compute import PointCache, _plain, _unplain

        key = PointCache.key(f"{self.label}-{kind}", params, {"v": VERSIONS.get(kind, 1), **settings})
        hit = self.cache.get(key)
        if hit is not None:
            return _unplain(hit)
        t0 = time.perf_counter()
        row = compute()
        self.cache.put(key, {k: _plain(v) if not isinstance(v, (list, dict)) else v for k, v in row.items()})
        print(f"[paper_figs] {self.label} {kind} {params.sigma} ({_brief(settings)}): "
              f"{time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        return row


def _brief(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in settings.items()
                     if not isinstance(v, (list, dict, tuple)))


def pretrain_state(cached: Cached, params: Params) -> PretrainState | None:
    """The pre-training theory at ``params`` (``Q0, Q, M, V``; ``None`` if it did not converge), cached."""
    def compute() -> dict[str, Any]:
        r = theory.solve(params, stage="pretrain", bayes=False)
        o = r.observables
        return {"converged": bool(r.converged), **{k: float(o[k]) for k in ("Q0", "Q", "M", "V", "E_pre")}}

    row = cached("pretrain", params, {}, compute)
    if not row["converged"] or not all(math.isfinite(row[k]) for k in ("Q0", "Q", "M")):
        return None
    V = row["V"] if math.isfinite(row["V"]) else None
    return PretrainState(Q0=row["Q0"], Q=row["Q"], M=row["M"], V=V)


def finetune_row(cached: Cached, params: Params, pre: PretrainState, *, n_mc: int, max_steps: int) -> dict[str, Any]:
    """One fine-tuning solve fed with ``pre`` (``stage="finetune"``): the observables, ``converged``, the solver's
    ``status``, ``rs_stable``, ``replicon``, ``prox_jump_frac`` and ``lam_prime_c``; cached."""
    def compute() -> dict[str, Any]:
        r = theory.solve(params, stage="finetune", pretrain=pre, bayes=False, n_mc=n_mc, max_steps=max_steps)
        ft = r.diagnostics.get("finetune", {})
        row = {k: float(v) for k, v in r.observables.items()}
        row.update(converged=bool(r.converged), status=str(ft.get("status")),
                   rs_stable=ft.get("rs_stable", ft.get("rs_stable_local")), replicon=ft.get("replicon", math.nan),
                   prox_jump_frac=ft.get("prox_jump_frac", math.nan), lam_prime_c=ft.get("lam_prime_c", math.nan))
        return row

    settings = {"n_mc": n_mc, "max_steps": max_steps, "pre": [pre.Q0, pre.Q, pre.M, pre.V]}
    return cached("finetune", params, settings, compute)
