"""The two ERM stages of MODEL.md §5 as fixed points of prior ∘ channel: pre-training
(:mod:`theory.stages.pretrain`), LoRA fine-tuning (:mod:`theory.stages.finetune`), and the replica-symmetric
stability of the latter (:mod:`theory.stages.rs_stability`)."""
