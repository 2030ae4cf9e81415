"""The theory of both stages behind one call, with MODEL.md §4 names: what ``lora-attn theory`` prints.

Stages:
- ``"finetune"``: the fine-tuning fixed point (:mod:`theory.finetune`) fed with pre-training order
  parameters ``(Q0, Q, M)`` given by the caller (e.g. measured in a simulation);
- ``"pretrain"``: the ERM pre-training fixed point (:mod:`theory.pretrain`, both σ) and the Bayes-optimal
  pre-training baseline (:mod:`theory.bayes_pretrain`);
- ``"both"``: pre-training, then fine-tuning fed with its ``(Q0, Q, M)`` and its susceptibility ``V`` (which
  reused sequences need).
The Bayes-optimal fine-tuning baseline (:mod:`theory.bayes_finetune`) is added on request
(``bayes=True``; it costs 10–30 s).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from lora_attn.params import ParameterError, Params
from theory.order_params import PretrainOrderParams

STAGES = ("both", "pretrain", "finetune")


@dataclass(frozen=True)
class TheoryResult:
    """Observables of the requested stage (MODEL.md names), convergence, and per-part diagnostics."""

    params: Params
    stage: str
    observables: dict[str, float]
    converged: bool
    pretrain_order: PretrainOrderParams | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def to_json_dict(self) -> dict[str, Any]:
        def clean(x: Any) -> Any:
            if isinstance(x, dict):
                return {k: clean(v) for k, v in x.items()}
            if isinstance(x, (list, tuple)):
                return [clean(v) for v in x]
            if isinstance(x, float) and math.isnan(x):
                return None
            if hasattr(x, "item") and not isinstance(x, (str, bytes)):
                return clean(x.item())
            return x

        pre = None if self.pretrain_order is None else {
            "Q0": self.pretrain_order.Q0, "Q": self.pretrain_order.Q, "M": self.pretrain_order.M}
        return clean({"params": self.params.to_dict(), "stage": self.stage, "pretrain": pre,
                      "observables": self.observables, "converged": self.converged,
                      "diagnostics": self.diagnostics})


def solve_stage(
    params: Params,
    stage: str,
    *,
    pretrain: PretrainOrderParams | None = None,
    q0: float = 1.0,
    bayes: bool = False,
    n_mc: int = 4000,
) -> TheoryResult:
    """Solve one stage of the theory.

    Args:
        params: the parameter point.
        stage: ``"both"``, ``"pretrain"`` or ``"finetune"``.
        pretrain: ``(Q0, Q, M)`` of the frozen weights (required for ``"finetune"``).
        q0: ``‖w*‖²/D`` (1 in the limit; a simulation's measured value may be passed).
        bayes: add the Bayes-optimal baseline of the stage (``E_ft_BO, q_BO`` / ``E_pre_BO, Q_BO``).
        n_mc: Monte-Carlo draws of the fine-tuning channel.
    """
    if stage not in STAGES:
        raise ParameterError(f"stage = {stage!r} is unknown: allowed one of {', '.join(STAGES)}")
    if stage == "finetune":
        if pretrain is None:
            raise ParameterError("stage 'finetune' needs the pre-training order parameters: --pretrain Q0=..,Q=..,M=..")
        return _finetune(params, pretrain, q0=q0, bayes=bayes, n_mc=n_mc)
    pre = _pretrain(params)
    if stage == "pretrain":
        return pre
    if pre.pretrain_order is None:
        raise ParameterError("stage 'both' needs the ERM pre-training order parameters, which the pre-training "
                             "stage did not give; use --stage finetune --pretrain Q0=..,Q=..,M=..")
    # the reused-sequence channel needs the pre-training susceptibility V as well as (Q0, Q, M)
    from theory.reuse import PretrainState

    order, V = pre.pretrain_order, pre.observables.get("V")
    if V is not None and math.isfinite(V):
        order = PretrainState(Q0=order.Q0, Q=order.Q, M=order.M, V=float(V))
    ft = _finetune(params, order, q0=q0, bayes=bayes, n_mc=n_mc)
    return TheoryResult(params=params, stage="both", observables={**pre.observables, **ft.observables},
                        converged=pre.converged and ft.converged, pretrain_order=pre.pretrain_order,
                        diagnostics={**pre.diagnostics, **ft.diagnostics})


def _finetune(params: Params, pre: PretrainOrderParams, *, q0: float, bayes: bool, n_mc: int) -> TheoryResult:
    """Fine-tuning theory at ``pre`` (``(Q0, Q, M)``; with ``V`` too for reused sequences). With active
    selection the random control of the same size is added as ``{q, m, o_w, E_ft, L_ft, delta_eff}_random``
    (the simulator's names)."""
    from theory.finetune import solve_finetune

    r = solve_finetune(params, pre, q0=q0, n_mc=n_mc)
    obs = {"q0": r.q0, "q": r.q, "m": r.m, "v": r.v, "o_w": r.o_w, "E_ft": r.E_ft, "L_ft": r.L_ft,
           "E_frozen": r.E_frozen, "delta_eff": r.delta_eff, "beta_W": r.beta_W}
    if r.random_control is not None:
        rc = r.random_control
        obs.update({f"{k}_random": getattr(rc, k) for k in ("q", "m", "o_w", "E_ft", "L_ft", "delta_eff")})
    diag: dict[str, Any] = {"finetune": {"n_steps": r.n_steps, "residual": r.residual, "mc_sem": dict(r.mc_sem),
                                         **{k: v for k, v in r.diagnostics.items() if _simple(v)}}}
    converged = bool(r.converged) and (r.random_control is None or bool(r.random_control.converged))
    if bayes:
        from theory.bayes_finetune import solve_bayes_finetune

        b = solve_bayes_finetune(params, pre)
        obs.update({"q_BO": b.q_BO, "E_ft_BO": b.E_ft_BO})
        diag["bayes_finetune"] = {"E_ft_BO_se": b.E_ft_BO_se, "q_se": b.q_se, "alpha_c": b.alpha_c,
                                  "delta_BO": b.delta_BO, "status": b.status}
        converged = converged and bool(b.converged)
    return TheoryResult(params=params, stage="finetune", observables=obs, converged=converged,
                        pretrain_order=pre, diagnostics=diag)


def _pretrain(params: Params) -> TheoryResult:
    from theory.bayes_pretrain import solve_bayes_pretrain
    from theory.pretrain import solve_pretrain

    b = solve_bayes_pretrain(params)
    obs: dict[str, float] = {"Q0": 1.0 + params.kappa0}
    diag: dict[str, Any] = {"bayes_pretrain": {"mmse": b.mmse, "E_pre_BO_sem": b.E_pre_BO_sem, "status": b.status}}
    converged = bool(b.converged)
    # linear σ: closed-form channel; softmax: Monte-Carlo T×T proximal channel (theory.pretrain_channel)
    r = solve_pretrain(params)
    obs.update({"Q": r.Q, "M": r.M, "V": r.V, "E_pre": r.E_pre, "L_pre": r.L_pre})
    diag["pretrain"] = {"n_steps": r.n_steps, "residual": r.residual, "status": r.status, "trace": r.trace}
    if params.sigma != "linear":
        diag["pretrain"].update({"E_pre_sem": r.E_pre_sem, "L_pre_sem": r.L_pre_sem, "n_mc": r.n_mc,
                                 "n_map": r.n_map, "hats_sem": dict(r.hats_sem),
                                 "prox": {k: v for k, v in r.prox.items() if _simple(v)}})
    converged = converged and r.converged
    order = PretrainOrderParams(Q0=r.Q0, Q=r.Q, M=r.M)
    obs.update({"Q_BO": b.Q_BO, "E_pre_BO": b.E_pre_BO})
    return TheoryResult(params=params, stage="pretrain", observables=obs, converged=converged,
                        pretrain_order=order, diagnostics=diag)


def _simple(v: Any) -> bool:
    return isinstance(v, (int, float, str, bool)) or v is None


def parse_pretrain(text: str) -> PretrainOrderParams:
    """``"Q0=2.0,Q=2.2,M=1.9"`` → :class:`PretrainOrderParams` (all three required)."""
    values: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in ("Q0", "Q", "M"):
            raise ParameterError(f"--pretrain {text!r}: expected Q0=..,Q=..,M=.. (got {part!r})")
        try:
            values[name] = float(value)
        except ValueError:
            raise ParameterError(f"--pretrain: {name} = {value!r} is not a number") from None
    missing = {"Q0", "Q", "M"} - set(values)
    if missing:
        raise ParameterError(f"--pretrain {text!r}: missing {', '.join(sorted(missing))}")
    return PretrainOrderParams(**values)
