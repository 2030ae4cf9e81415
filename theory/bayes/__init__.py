"""The Bayes-optimal baselines of both stages (MODEL.md §5 item 6, §5.6): their state evolutions
(:mod:`theory.bayes.pretrain`, :mod:`theory.bayes.finetune`)."""
