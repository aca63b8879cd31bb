"""Text conditioning: the base's own encoders run once per distinct prompt, results kept in an LRU cache.

Encoding is delegated to diffusers' `FluxPipeline.encode_prompt` / `QwenImagePipeline.encode_prompt` on
a pipeline loaded without its transformer, which is what the official π-Flow pipelines call too (they
subclass those pipelines), so tokenisation, truncation, templates and pooling are the base's exactly.

One prompt's conditioning has batch 1; `collate` repeats and stacks them into the rows of a shared
forward (FLUX: fixed-length T5 embeddings; Qwen-Image: per-prompt lengths, zero-padded with a mask,
which the Qwen-Image transformer applies as an attention mask so padding changes no valid token).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable

import torch

Conditioning = dict[str, torch.Tensor]


class PromptCache:
    """Least-recently-used map prompt → conditioning (tensors stay on the model's device)."""

    def __init__(self, capacity: int):
        if capacity < 0:
            raise ValueError(f'prompt cache capacity must be >= 0, got {capacity}')
        self.capacity = capacity
        self._entries: OrderedDict[str, Conditioning] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, prompt: str) -> Conditioning | None:
        with self._lock:
            entry = self._entries.get(prompt)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(prompt)
            self.hits += 1
            return entry

    def put(self, prompt: str, conditioning: Conditioning):
        if self.capacity == 0:
            return
        with self._lock:
            self._entries[prompt] = conditioning
            self._entries.move_to_end(prompt)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def __len__(self):
        return len(self._entries)


def _encode_flux(base, prompt: str, device: torch.device, max_length: int) -> Conditioning:
    prompt_embeds, pooled, _text_ids = base.encode_prompt(
        prompt=[prompt], prompt_2=None, device=device, num_images_per_prompt=1, max_sequence_length=max_length)
    return {'prompt_embeds': prompt_embeds, 'pooled_prompt_embeds': pooled}


def _encode_qwen(base, prompt: str, device: torch.device, max_length: int) -> Conditioning:
    embeds, mask = base.encode_prompt(prompt=[prompt], device=device, num_images_per_prompt=1,
                                      max_sequence_length=max_length)
    if mask is None:  # diffusers drops an all-ones mask
        mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
    return {'prompt_embeds': embeds, 'prompt_embeds_mask': mask}


ENCODERS: dict[str, Callable[..., Conditioning]] = {'flux': _encode_flux, 'qwen': _encode_qwen}


class PromptEncoder:
    """Encodes prompts with the base's text encoders, each distinct prompt once while it stays cached."""

    def __init__(self, family: str, base, device: torch.device, max_length: int, cache: PromptCache):
        self._encode = ENCODERS[family]
        self.family = family
        self.base = base
        self.device = device
        self.max_length = max_length
        self.cache = cache

    @torch.inference_mode()
    def encode(self, prompts: list[str]) -> dict[str, Conditioning]:
        """Conditioning of every distinct prompt in `prompts` (batch 1 each)."""
        found: dict[str, Conditioning] = {}
        for prompt in dict.fromkeys(prompts):
            entry = self.cache.get(prompt)
            if entry is None:
                # One prompt per encoder call: a cached entry must not depend on which other prompts
                # it was encoded with (padding to the longest, batch-size-dependent kernels).
                entry = self._encode(self.base, prompt, self.device, self.max_length)
                self.cache.put(prompt, entry)
            found[prompt] = entry
        return found


def collate(family: str, rows: list[Conditioning], guidance: list[float | None]) -> Conditioning:
    """Stacks per-row conditioning (one entry per image) into the batch the student takes."""
    if family == 'flux':
        out = {'prompt_embeds': torch.cat([r['prompt_embeds'] for r in rows]),
               'pooled_prompt_embeds': torch.cat([r['pooled_prompt_embeds'] for r in rows])}
        device = out['prompt_embeds'].device
        out['guidance'] = torch.tensor(guidance, dtype=torch.float32, device=device)
        return out
    longest = max(r['prompt_embeds'].shape[1] for r in rows)
    embeds, masks = [], []
    for r in rows:
        e, m = r['prompt_embeds'], r['prompt_embeds_mask']
        pad = longest - e.shape[1]
        embeds.append(torch.nn.functional.pad(e, (0, 0, 0, pad)))
        masks.append(torch.nn.functional.pad(m, (0, pad)))
    return {'prompt_embeds': torch.cat(embeds), 'prompt_embeds_mask': torch.cat(masks)}
