"""Loading the released π-Flow students: a diffusers base (FLUX.1 / Qwen-Image transformer) + a π-Flow
adapter (LoRA + GM heads or DX output + ``policy_config``), from a directory or the Hugging Face Hub."""

from .adapter_format import POLICY_TYPES
from .load import SUPPORTED_ADAPTER_CLASSES, load_student
from .student import PreparedConditioning, Student, pack_latents, unpack_groups, unpack_latents

__all__ = [
    "POLICY_TYPES",
    "SUPPORTED_ADAPTER_CLASSES",
    "PreparedConditioning",
    "Student",
    "load_student",
    "pack_latents",
    "unpack_groups",
    "unpack_latents",
]
