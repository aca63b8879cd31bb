"""One served model and the whole generation of a batch of requests on its device.

`load_model` puts together what a manifest names: the base's text encoders, tokenizers and VAE (a
diffusers pipeline loaded without its transformer), the π-Flow student (`adapters.load_student`: base
transformer + adapter), the prompt cache and the preview map. `run_batch` then serves requests that
share a model, size and NFE count in one pass: each distinct prompt is encoded once, each image's noise
comes from the project's Philox stream (image i of a request uses seed + i), the sampler runs one
student forward per NFE for all rows together, and every image is VAE-decoded and PNG-encoded.

Callbacks report per-NFE progress (with a preview when asked) and each image as soon as it is encoded;
`should_stop` is checked between NFEs (the sampler raises `Cancelled`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch

from ..adapters import load_student
from ..manifest import LoadedManifest
from ..noise import randn_batch, request_seeds
from ..sampler import SamplerSettings, sample
from .images import decode_latents, png_bytes
from .preview import LatentPreviewer
from .spec import GenerationSpec
from .text import PromptCache, PromptEncoder, collate

class BatchMember(Protocol):
    """What `run_batch` needs of one request in the batch (server/batcher.py's Job implements it)."""

    spec: GenerationSpec

    def cancelled(self) -> bool: ...

    def on_progress(self, step: int, nfe: int, preview_png: bytes | None) -> None: ...

    def on_image(self, index: int, seed: int, png: bytes, width: int, height: int) -> None: ...


@dataclass
class BatchTimings:
    encode_ms: float = 0.0
    step_ms: list[float] = field(default_factory=list)
    decode_ms: float = 0.0
    rows: int = 0


@dataclass
class ModelRuntime:
    """A loaded model: everything `run_batch` needs, on one device."""

    loaded: LoadedManifest
    base: object  # FluxPipeline / QwenImagePipeline without a transformer
    student: object  # adapters.Student
    encoder: PromptEncoder
    previewer: LatentPreviewer
    device: torch.device
    dtype: torch.dtype

    @property
    def id(self) -> str:
        return self.loaded.id

    @property
    def manifest(self):
        return self.loaded.manifest

    def settings(self, spec: GenerationSpec) -> SamplerSettings:
        per = self.manifest.per_nfe(spec.nfe)
        return SamplerSettings(nfe=spec.nfe, shift=per.shift, final_step_size_scale=per.finalStepSizeScale,
                               total_substeps=per.totalSubsteps, substep_rule=per.substepRule,
                               temperature=per.temperature, guidance=spec.guidance, eps=self.manifest.sampling.eps)


BASE_CLASSES = {'flux': 'FluxPipeline', 'qwen': 'QwenImagePipeline'}


def _load_base(loaded: LoadedManifest, dtype: torch.dtype, device: torch.device, token, local_files_only):
    import diffusers

    manifest = loaded.manifest
    repo, subfolder, revision = loaded.resolve(manifest.base)
    if subfolder is not None:
        raise ValueError(f'{loaded.id}: base.subfolder is not supported (a base is a whole diffusers repo)')
    cls = getattr(diffusers, BASE_CLASSES[manifest.family])
    kwargs = {'transformer': None, 'torch_dtype': dtype, 'revision': revision, 'token': token}
    if local_files_only is not None:
        kwargs['local_files_only'] = local_files_only
    return cls.from_pretrained(repo, **kwargs).to(device)


def load_model(loaded: LoadedManifest, *, dtype: torch.dtype, device: torch.device, token: str | None = None,
               local_files_only: bool | None = None, prompt_cache_size: int = 64,
               preview_size: int = 64) -> ModelRuntime:
    """Loads base components and student of `loaded` onto `device`; errors name what is wrong."""
    manifest = loaded.manifest
    base = _load_base(loaded, dtype, device, token, local_files_only)
    base_repo, _, base_revision = loaded.resolve(manifest.base)
    adapter_repo, adapter_subfolder, _ = loaded.resolve(manifest.adapter)
    student = load_student(base_repo, adapter_repo, adapter_subfolder=adapter_subfolder, dtype=dtype,
                           device=device, token=token, local_files_only=local_files_only)
    _check_student(loaded, student)
    encoder = PromptEncoder(manifest.family, base, device, manifest.text.maxSequenceLength,
                            PromptCache(prompt_cache_size))
    previewer = LatentPreviewer.fit(manifest.family, base.vae, preview_size)
    return ModelRuntime(loaded, base, student, encoder, previewer, device, dtype)


def _check_student(loaded: LoadedManifest, student):
    """The manifest describes the student it serves; a mismatch is a start-up error, not bad images."""
    m = loaded.manifest
    want = {'kind': m.family, 'policy_type': m.policy.type, 'latent_channels': m.latentChannels}
    if m.policy.type == 'gm':
        want['k'] = m.policy.k
    got = {name: getattr(student, name) for name in want}
    if got != want:
        raise ValueError(f'{loaded.id}: the manifest says {want}, the loaded adapter is {got}')


def _noise(runtime: ModelRuntime, spec: GenerationSpec) -> torch.Tensor:
    """Each image's own Philox stream (image i: seed + i), so batching never changes an image's noise."""
    f = runtime.manifest.vaeScaleFactor
    shape = (runtime.manifest.latentChannels, spec.height // f, spec.width // f)
    return randn_batch(request_seeds(spec.seed, spec.count), shape, device=runtime.device)


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1e3


def _sync(device: torch.device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


@torch.inference_mode()
def run_batch(runtime: ModelRuntime, members: list[BatchMember], should_stop: Callable[[], bool],
              step_delay_s: float = 0.0) -> BatchTimings:
    """Generates every image of `members` (equal batch keys) in shared forwards; see the module doc."""
    first = members[0].spec
    if any(m.spec.batch_key() != first.batch_key() for m in members):
        raise ValueError('run_batch takes members of one batch key only')
    timings = BatchTimings(rows=sum(m.spec.count for m in members))
    family = runtime.manifest.family

    start = time.perf_counter()
    prompts = runtime.encoder.encode([m.spec.prompt for m in members])
    rows, guidance, offsets = [], [], []
    for m in members:
        offsets.append(len(rows))
        rows += [prompts[m.spec.prompt]] * m.spec.count
        guidance += [m.spec.guidance] * m.spec.count
    conditioning = collate(family, rows, guidance)
    noise = torch.cat([_noise(runtime, m.spec) for m in members])
    _sync(runtime.device)
    timings.encode_ms = _ms_since(start)

    step_start = time.perf_counter()

    def on_step(step_index: int, latents: torch.Tensor):
        nonlocal step_start
        for m, offset in zip(members, offsets):
            if m.cancelled():
                continue
            preview = runtime.previewer.png(latents[offset]) if m.spec.preview else None
            m.on_progress(step_index + 1, first.nfe, preview)
        _sync(runtime.device)
        timings.step_ms.append(_ms_since(step_start))
        if step_delay_s > 0:  # fault injection (--debug-step-delay-ms): a slow accelerator
            time.sleep(step_delay_s)
        step_start = time.perf_counter()

    latents = sample(runtime.student, noise, conditioning, runtime.settings(first), on_step=on_step,
                     should_stop=should_stop)

    start = time.perf_counter()
    for m, offset in zip(members, offsets):
        for i, seed in enumerate(request_seeds(m.spec.seed, m.spec.count)):
            if m.cancelled():
                break
            rgb = decode_latents(family, runtime.base, latents[offset + i:offset + i + 1])[0]
            m.on_image(i, seed, png_bytes(rgb), m.spec.width, m.spec.height)
    timings.decode_ms = _ms_since(start)
    return timings
