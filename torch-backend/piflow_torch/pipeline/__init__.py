"""The generation pipeline of the PyTorch backend: text encoding with a prompt cache (text.py), the
π-Flow sampler over shared forwards (generate.py), VAE decoding and PNG (images.py), small RGB previews
from the latent (preview.py). Import from the submodules: this package imports nothing heavy itself."""
