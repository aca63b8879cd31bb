"""Per-model manifests of the PyTorch backend: which base and π-Flow adapter make a model, and how it samples.

A manifest is a JSON file (`piflow_torch/manifests/<id>.json` for the released students, any path for
others) in the shape of the default model's `models/<id>/manifest.json` where the two overlap (`id`,
`name`, `license`, `policy`, `guidance`, `sampling.perNfe`), plus what a diffusers model needs:

- `family`: `flux` or `qwen` (which text encoders, VAE and latent packing the base has);
- `base` and `adapter`: `{"repo": "<HF repo id>", "subfolder"?, "revision"?}` or `{"path": "<dir>"}` (a
  relative `path` is resolved against the manifest's folder);
- `image`: default, smallest and largest side, the multiple every side must be, and a pixel cap;
- `text`: the tokenizer sequence length the pipeline encodes with, and a prompt-length cap;
- `limits`: images per request and rows per shared forward.

`load_manifest` accepts a path or the id of a bundled manifest; every field is checked once, here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import PiflowTorchError

BUNDLED_DIR = Path(__file__).resolve().parent / 'manifests'


class ManifestError(PiflowTorchError, ValueError):
    """A manifest that cannot be found or does not validate; the message names the file and the field."""

    code = "manifest_invalid"


class _Strict(BaseModel):
    model_config = ConfigDict(extra='forbid', frozen=True)


class HubSource(_Strict):
    """A Hugging Face Hub repository (downloaded with the user's token, or read from the offline cache)."""

    repo: Annotated[str, Field(min_length=3, pattern=r'^[A-Za-z0-9][\w.-]*/[\w.-]+$')]
    subfolder: str | None = None
    revision: str | None = None


class LocalSource(_Strict):
    """A local folder laid out like the Hub repository (relative paths: from the manifest's folder)."""

    path: Annotated[str, Field(min_length=1)]
    subfolder: str | None = None


Source = Union[HubSource, LocalSource]


class GmPolicy(_Strict):
    type: Literal['gm']
    k: Annotated[int, Field(ge=1, le=64)]


class DxPolicy(_Strict):
    type: Literal['dx']
    n: Annotated[int, Field(ge=1, le=64)]


class ImageLimits(_Strict):
    defaultWidth: Annotated[int, Field(ge=16)]
    defaultHeight: Annotated[int, Field(ge=16)]
    minSide: Annotated[int, Field(ge=16)]
    maxSide: Annotated[int, Field(ge=16, le=8192)]
    multipleOf: Annotated[int, Field(ge=1)]
    maxPixels: Annotated[int, Field(ge=256)]


class TextLimits(_Strict):
    maxSequenceLength: Annotated[int, Field(ge=1, le=4096)]
    maxPromptChars: Annotated[int, Field(ge=1, le=100_000)]


class Guidance(_Strict):
    """Embedded guidance (FLUX's `guidance` input); `null` default for a base without one (Qwen-Image)."""

    default: float | None
    min: float | None = None
    max: float | None = None


class PerNfe(_Strict):
    shift: Annotated[float, Field(gt=0, le=1000)]
    finalStepSizeScale: Annotated[float, Field(gt=0, le=1)]
    temperature: Union[Annotated[float, Field(gt=0, le=10)], Literal['auto']]
    totalSubsteps: Annotated[int, Field(ge=1, le=10_000)]
    # `ceil` is what the official v0.2 pipelines do, `round` what v0.1 (and the golden vectors) did.
    substepRule: Literal['round', 'ceil']


class Sampling(_Strict):
    nfeOptions: Annotated[list[Annotated[int, Field(ge=1, le=64)]], Field(min_length=1)]
    defaultNfe: int
    eps: Annotated[float, Field(gt=0, le=0.1)]
    perNfe: dict[str, PerNfe]


class Limits(_Strict):
    maxCount: Annotated[int, Field(ge=1, le=64)]
    maxBatchSize: Annotated[int, Field(ge=1, le=256)]


class TorchManifest(_Strict):
    schemaVersion: Literal[1] = 1
    id: Annotated[str, Field(pattern=r'^[a-z0-9][a-z0-9-]{0,63}$')]
    name: Annotated[str, Field(min_length=1)]
    license: Annotated[str, Field(min_length=1)]
    attribution: str | None = None
    family: Literal['flux', 'qwen']
    base: Source
    adapter: Source
    policy: Annotated[Union[GmPolicy, DxPolicy], Field(discriminator='type')]
    latentChannels: Annotated[int, Field(ge=1, le=256)]
    vaeScaleFactor: Annotated[int, Field(ge=1, le=64)]
    image: ImageLimits
    text: TextLimits
    guidance: Guidance
    sampling: Sampling
    limits: Limits

    @model_validator(mode='after')
    def _cross_check(self):
        s = self.sampling
        if s.defaultNfe not in s.nfeOptions:
            raise ValueError(f'sampling.defaultNfe {s.defaultNfe} is not one of nfeOptions {s.nfeOptions}')
        missing = [n for n in s.nfeOptions if str(n) not in s.perNfe]
        if missing:
            raise ValueError(f'sampling.perNfe has no entry for nfe {missing}')
        img = self.image
        # Latents are packed 2x2 after the VAE's 8x: every side must be a multiple of 16.
        step = 2 * self.vaeScaleFactor
        for name in ('multipleOf', 'minSide', 'maxSide', 'defaultWidth', 'defaultHeight'):
            if getattr(img, name) % step:
                raise ValueError(f'image.{name} must be a multiple of {step}')
        if not img.minSide <= min(img.defaultWidth, img.defaultHeight) <= max(
                img.defaultWidth, img.defaultHeight) <= img.maxSide:
            raise ValueError('image defaults must lie within minSide … maxSide')
        if img.defaultWidth * img.defaultHeight > img.maxPixels:
            raise ValueError('image defaults exceed image.maxPixels')
        g = self.guidance
        if self.family == 'flux' and (g.default is None or g.min is None or g.max is None):
            raise ValueError('a flux model needs guidance.default, .min and .max (embedded guidance)')
        if g.default is not None and not (g.min is not None and g.max is not None and g.min <= g.default <= g.max):
            raise ValueError('guidance.default must lie within guidance.min … guidance.max')
        if self.limits.maxCount > self.limits.maxBatchSize:
            raise ValueError('limits.maxCount cannot exceed limits.maxBatchSize (one request is one batch)')
        return self

    def per_nfe(self, nfe: int) -> PerNfe:
        return self.sampling.perNfe[str(nfe)]


class LoadedManifest:
    """A validated manifest and the folder its relative paths are resolved from."""

    def __init__(self, manifest: TorchManifest, folder: Path):
        self.manifest = manifest
        self.folder = folder

    @property
    def id(self) -> str:
        return self.manifest.id

    def resolve(self, source: Source) -> tuple[str, str | None, str | None]:
        """(repo id or absolute folder, subfolder, revision) for a loader call."""
        if isinstance(source, LocalSource):
            path = Path(source.path)
            return str(path if path.is_absolute() else (self.folder / path).resolve()), source.subfolder, None
        return source.repo, source.subfolder, source.revision


def bundled_ids() -> list[str]:
    return sorted(p.stem for p in BUNDLED_DIR.glob('*.json'))


def load_manifest(path_or_id: str | Path) -> LoadedManifest:
    """Reads and validates a manifest file, or the bundled manifest of that id."""
    path = Path(path_or_id)
    if not path.suffix == '.json':
        bundled = BUNDLED_DIR / f'{path_or_id}.json'
        if not bundled.is_file():
            raise ManifestError(f'no manifest file {path_or_id!r} and no bundled model of that id '
                                f'(bundled: {", ".join(bundled_ids())})')
        path = bundled
    try:
        raw = json.loads(path.read_text(encoding='utf-8'))
    except FileNotFoundError:
        raise ManifestError(f'manifest {path} does not exist') from None
    except (OSError, json.JSONDecodeError) as error:
        raise ManifestError(f'manifest {path} is not readable JSON: {error}') from None
    try:
        manifest = TorchManifest.model_validate(raw)
    except ValidationError as error:
        details = '; '.join(f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in error.errors())
        raise ManifestError(f'manifest {path} is invalid: {details}') from None
    return LoadedManifest(manifest, path.resolve().parent)
