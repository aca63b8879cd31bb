"""The generation pipeline of the PyTorch backend: text encoding with a prompt cache, the π-Flow sampler
over shared forwards, VAE decoding, PNG, and small RGB previews from the latent."""

from .generate import BatchMember, BatchTimings, GenerationSpec, ModelRuntime, load_model, run_batch

__all__ = ['BatchMember', 'BatchTimings', 'GenerationSpec', 'ModelRuntime', 'load_model', 'run_batch']
