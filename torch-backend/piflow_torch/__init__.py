"""piflow's PyTorch backend: the released π-Flow students (adapters over diffusers bases) served
exactly as the official code samples them. Math: ``piflow_torch.policy``; noise: ``piflow_torch.noise``;
loading: ``piflow_torch.adapters``; the NFE loop over a loaded student: ``piflow_torch.sampler``.
"""

__version__ = "0.1.0"
