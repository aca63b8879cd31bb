"""piflow_torch.noise against policy/vectors/noise.json and the pure-Python reference (policy/NOISE.md)."""

from __future__ import annotations

import importlib.util
import json
import struct

import pytest
import torch
from conftest import NOISE_VECTORS, REPO_ROOT, requires_cuda

from piflow_torch import noise
from piflow_torch.errors import PolicyOptionError

VECTORS = json.loads(NOISE_VECTORS.read_text())


def _reference():
    spec = importlib.util.spec_from_file_location("noise_reference", REPO_ROOT / "policy/vectors/noise_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _f32_bits(values: torch.Tensor) -> list[str]:
    return ["%08x" % struct.unpack("<I", struct.pack("<f", v))[0] for v in values.tolist()]


@pytest.mark.parametrize("case", VECTORS["philox4x32_10"], ids=lambda c: "-".join(c["counter"]))
def test_philox_known_answers(case):
    counter = [torch.tensor([int(w, 16)]) for w in case["counter"]]
    words = noise.philox4x32(counter, int(case["key"][0], 16), int(case["key"][1], 16))
    assert ["%08x" % int(w) for w in words] == case["output"]


@pytest.mark.parametrize("case", VECTORS["box_muller"], ids=lambda c: f"{c['a']}-{c['b']}")
def test_box_muller_is_bit_exact(case):
    a, b = torch.tensor([int(case["a"], 16)]), torch.tensor([int(case["b"], 16)])
    assert noise.ln_uniform(a).item() == case["ln_uniform_a"]
    assert [t.item() for t in noise.box_muller(a, b)] == case["normals"]


@pytest.mark.parametrize("case", VECTORS["streams"], ids=lambda c: f"seed{c['seed']}-offset{c['offset']}")
def test_streams_float64_and_float32_bits(case):
    n = len(case["float64"])
    assert noise.randn((n,), case["seed"], case["offset"], dtype=torch.float64).tolist() == case["float64"]
    assert _f32_bits(noise.randn((n,), case["seed"], case["offset"])) == case["float32_bits"]


def test_long_stream_matches_the_pure_python_reference_at_an_unaligned_offset():
    reference = _reference()
    seed, offset, count = 4294967295, 2**33 + 3, 1001  # counter word 1 non-zero, offset not a block start
    expected = reference.randn(count, seed, offset)
    got = noise.randn((count,), seed, offset, dtype=torch.float64)
    assert got.tolist() == expected


def test_any_slice_of_a_stream_is_generated_alone():
    whole = noise.randn((4, 16, 5, 7), 42, dtype=torch.float64).reshape(-1)
    part = noise.randn((101,), 42, 333, dtype=torch.float64)
    assert torch.equal(whole[333:434], part)


def test_batch_stacks_each_seeds_own_stream_and_request_seeds_wrap():
    assert noise.request_seeds(2**32 - 2, 3) == [2**32 - 2, 2**32 - 1, 0]
    batch = noise.randn_batch([7, 8], (16, 4, 6))
    assert torch.equal(batch[1], noise.randn((16, 4, 6), 8))
    assert torch.equal(batch[0], noise.randn((16, 4, 6), 7))


def test_statistics_of_200k_draws():
    z = noise.randn((200_000,), 123, dtype=torch.float64)
    assert abs(z.mean().item()) < 0.01
    assert abs(z.var().item() - 1) < 0.01
    tail = (z.abs() > 2).double().mean().item()
    assert abs(tail - 0.0455) < 0.003


@pytest.mark.parametrize(
    "kwargs",
    [
        {"shape": (4,), "seed": -1},
        {"shape": (4,), "seed": 2**32},
        {"shape": (4,), "seed": 1.5},
        {"shape": (4,), "seed": True},
        {"shape": (4,), "seed": 0, "offset": -1},
        {"shape": (4,), "seed": 0, "offset": 2**53},
        {"shape": (2**16, 2**16), "seed": 0},
        {"shape": (-1,), "seed": 0},
        {"shape": (4,), "seed": 0, "dtype": torch.int64},
    ],
)
def test_bad_arguments_raise_a_typed_error_before_allocating(kwargs):
    with pytest.raises(PolicyOptionError):
        noise.randn(**kwargs)


@requires_cuda
def test_cuda_noise_has_the_cpu_bits():
    assert torch.equal(noise.randn((16, 32, 32), 9, device="cuda").cpu(), noise.randn((16, 32, 32), 9))
