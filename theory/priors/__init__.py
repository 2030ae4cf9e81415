"""The prior half-steps of the theory: the spectral denoiser of pre-training (:mod:`theory.priors.denoiser`,
on the free-probability spectra of :mod:`theory.priors.spectrum`) and the ridge prior of the LoRA vector
(:mod:`theory.priors.ridge`)."""
