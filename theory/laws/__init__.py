"""Laws of the frozen pair ``(A, H)`` that the fine-tuning channel sees (MODEL.md §3, §5.5).

Per fine-tuning sequence the channel (:mod:`theory.channels.lora`) needs the frozen student part
``A = β_W A_Ŵ(X)`` and the label part ``H = A_{W0}(X) + √Δ Z`` of the same sequence. Three laws:

* **fresh** (:mod:`theory.laws.fresh`, ``e = 0``): ``(A_Ŵ, A_{W0})`` GOE-like with off-diagonal covariance
  ``[[Q, M], [M, Q0]]`` (diagonal twice it), ``Z`` independent;
* **reused** (:mod:`theory.laws.reused`, fraction ``e``): a pre-training sequence keeps its ``A_{W0}`` and
  its ``Z``, and the frozen model's pre-activation is its *training* pre-activation;
* **selected** (:mod:`theory.laws.selected`, active fine-tuning): the fresh law conditioned on a low score
  ``‖A_Ŵ‖_F``.

:mod:`theory.laws.mixture` draws the channel's samples from the law of the data the fine-tuning sees
(:func:`theory.laws.mixture.channel_samples`) and the noise they carry, ``Δ_eff`` = off-diagonal variance of
``H − A`` (the simulator's definition).
"""
