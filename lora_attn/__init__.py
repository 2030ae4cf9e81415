"""lora-attn: theory simulator for LoRA fine-tuning of a tied attention layer.

This package is the command line (:mod:`lora_attn.cli`); it re-exports the parameters of the ground layer
(:mod:`model.params`) so that ``from lora_attn import Params`` works as documented.
"""

from model.params import ParameterError, Params

__all__ = ["ParameterError", "Params"]
