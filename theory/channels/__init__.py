"""The channel half-steps of the theory: the ``T×T`` Monte-Carlo channel of pre-training
(:mod:`theory.channels.pretrain`), the ``R^T`` channel of LoRA fine-tuning (:mod:`theory.channels.lora`), and
the batched proximal operator they rest on (:mod:`theory.channels.prox`)."""
