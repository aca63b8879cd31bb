"""The generate request: JSON schema, then the model's limits, checked before anything is allocated.

Two stages, each with its own stable code (backend/PROTOCOL.md "Whole generations"):
- `malformed_json` when the body is not a JSON object, `invalid_request` when a field is missing,
  unknown or of the wrong type (with `fields`: one `{path, message}` per problem);
- `invalid_value` when a well-typed value is outside what the model allows (sizes, count, NFE,
  guidance, prompt length) — checked against the manifest after defaults are filled in.
"""

from __future__ import annotations

import json
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError

from ..manifest import TorchManifest
from ..pipeline.spec import GenerationSpec
from .errors import ProtocolError

MAX_SEED = 2 ** 32 - 1


class GenerateBody(BaseModel):
    """What a client may send; `None` means "the model's default"."""

    model_config = ConfigDict(extra='forbid')

    prompt: StrictStr
    seed: Annotated[StrictInt, Field(ge=0, le=MAX_SEED)]
    count: StrictInt = 1
    nfe: StrictInt | None = None
    width: StrictInt | None = None
    height: StrictInt | None = None
    guidance: StrictFloat | StrictInt | None = None
    preview: StrictBool = False


def _field_errors(error: ValidationError) -> list[dict]:
    return [{'path': '.'.join(map(str, e['loc'])) or '(body)', 'message': e['msg']} for e in error.errors()]


def parse_body(raw: bytes) -> GenerateBody:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ProtocolError(400, 'malformed_json', f'body is not JSON: {error}') from None
    if not isinstance(data, dict):
        raise ProtocolError(400, 'malformed_json', 'body must be a JSON object')
    try:
        return GenerateBody.model_validate(data)
    except ValidationError as error:
        fields = _field_errors(error)
        summary = '; '.join(f"{f['path']}: {f['message']}" for f in fields)
        raise ProtocolError(400, 'invalid_request', summary, fields=fields) from None


def _invalid(path: str, message: str) -> ProtocolError:
    return ProtocolError(400, 'invalid_value', f'{path}: {message}', fields=[{'path': path, 'message': message}])


def normalize(body: GenerateBody, manifest: TorchManifest) -> GenerationSpec:
    """Fills the model's defaults and checks every value against its manifest."""
    img, text, limits, sampling = manifest.image, manifest.text, manifest.limits, manifest.sampling
    prompt = body.prompt
    if not prompt.strip():
        raise _invalid('prompt', 'must not be empty')
    if len(prompt) > text.maxPromptChars:
        raise _invalid('prompt', f'must be at most {text.maxPromptChars} characters, got {len(prompt)}')
    if not 1 <= body.count <= limits.maxCount:
        raise _invalid('count', f'must be 1 … {limits.maxCount}, got {body.count}')
    nfe = sampling.defaultNfe if body.nfe is None else body.nfe
    if nfe not in sampling.nfeOptions:
        raise _invalid('nfe', f'must be one of {sampling.nfeOptions}, got {nfe}')
    width = img.defaultWidth if body.width is None else body.width
    height = img.defaultHeight if body.height is None else body.height
    for name, side in (('width', width), ('height', height)):
        if not img.minSide <= side <= img.maxSide or side % img.multipleOf:
            raise _invalid(name, f'must be a multiple of {img.multipleOf} in {img.minSide} … {img.maxSide}, '
                                 f'got {side}')
    if width * height > img.maxPixels:
        raise _invalid('width', f'width × height must be at most {img.maxPixels} pixels, got {width * height}')
    guidance = _guidance(body.guidance, manifest)
    return GenerationSpec(prompt=prompt, seed=body.seed, count=body.count, width=width, height=height, nfe=nfe,
                          guidance=guidance, preview=body.preview)


def _guidance(value: float | None, manifest: TorchManifest) -> float | None:
    g = manifest.guidance
    if g.default is None:
        if value is not None:
            raise _invalid('guidance', f'{manifest.id} has no embedded guidance; leave it out')
        return None
    value = g.default if value is None else float(value)
    if not g.min <= value <= g.max:
        raise _invalid('guidance', f'must be {g.min} … {g.max}, got {value}')
    return value
