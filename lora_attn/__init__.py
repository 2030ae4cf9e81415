"""lora-attn: theory simulator for LoRA fine-tuning of a tied attention layer."""

from lora_attn.params import ParameterError, Params

__all__ = ["ParameterError", "Params"]
