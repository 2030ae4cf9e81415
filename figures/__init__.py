"""Figure set of MODEL.md §6: plotting helpers and one module per figure; outputs go to ``figures/out``."""
