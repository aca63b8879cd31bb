"""The training layout (trainloop.use_layout) and fused AdamW: a run resumed channels-last with the fused
kernel takes the steps a contiguous for-loop AdamW takes, and the hazard use_layout exists for is real
(a contiguous moment beside a channels-last weight is misread by the fused kernel). Needs torch >= 2.4.

Compared as the gap between two runs' updates relative to the update itself: Adam divides by the root
of the second moment, so parameters with near-zero gradients turn last-bit differences of a convolution's
summation order into visible ones (0.2-0.6 % here), while the misread moments give ~75 %."""

from __future__ import annotations

import copy
import unittest

import numpy as np
import torch

from models.recipe import trainloop
from models.recipe.nets import EmojiNet, NetConfig
from models.recipe.train_teacher import flow_loss

TINY = NetConfig(vocab_size=1, channels=8, image_size=16, patch=2, text_input="vector", text_dim=8)
FUSED_CPU = tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (2, 4)


def _steps(st: trainloop.TrainState, n: int) -> float:
    """n plain AdamW steps on fixed data; returns the last loss."""
    g = torch.Generator().manual_seed(5)
    x0 = torch.rand(4, 3, 16, 16, generator=g) * 2 - 1
    text = torch.randn(4, 8, generator=g)
    for _ in range(n):
        loss = flow_loss(st.net, x0, text, g)
        st.opt.zero_grad()
        loss.backward()
        st.opt.step()
    return float(loss.detach())


def _update_gap(a: trainloop.TrainState, b: trainloop.TrainState, start: dict) -> float:
    """|w_a - w_b| / |w_a - w_start| over all weights."""
    wa, wb = a.net.state_dict(), b.net.state_dict()
    gap = sum(float((wa[k] - wb[k]).pow(2).sum()) for k in wa) ** 0.5
    return gap / sum(float((wa[k] - start[k]).pow(2).sum()) for k in wa) ** 0.5


def _resumed(checkpoint: dict) -> trainloop.TrainState:
    """A state rebuilt from a checkpoint the way trainloop.resume_state rebuilds it."""
    net = EmojiNet(TINY)
    net.load_state_dict(copy.deepcopy(checkpoint["model"]))
    opt = trainloop._adamw(net, 1e-3)
    opt.load_state_dict(copy.deepcopy(checkpoint["opt"]))
    for group in opt.param_groups:
        group.update(trainloop._adamw_options())
    return trainloop.TrainState(net, copy.deepcopy(net), opt, 0, np.random.default_rng(0), torch.Generator())


@unittest.skipUnless(FUSED_CPU, f"torch {torch.__version__} has no fused CPU AdamW (2.4+)")
class LayoutTest(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(0)
        st = trainloop.fresh_state(EmojiNet(TINY), 1e-3, 0, 1)  # contiguous, fused
        _steps(st, 3)  # non-trivial moments
        self.checkpoint = {"model": st.net.state_dict(), "opt": st.opt.state_dict()}

    def test_channels_last_and_fused_resume_like_the_default(self):
        reference = _resumed(self.checkpoint)
        for group in reference.opt.param_groups:
            group["fused"] = None  # the for-loop kernel, default layout
        trainloop.use_layout(reference, "fp32")
        bf16_layout = _resumed(self.checkpoint)
        trainloop.use_layout(bf16_layout, "bf16")
        self.assertTrue(bf16_layout.net.stem.weight.is_contiguous(memory_format=torch.channels_last))
        self.assertTrue(bf16_layout.opt.param_groups[0]["fused"])
        _steps(reference, 3)
        _steps(bf16_layout, 3)
        self.assertLess(_update_gap(reference, bf16_layout, self.checkpoint["model"]), 0.03)

    def test_the_misread_use_layout_prevents(self):
        reference, mismatched = _resumed(self.checkpoint), _resumed(self.checkpoint)
        mismatched.net.to(memory_format=torch.channels_last)  # weights converted, moments left contiguous
        _steps(reference, 3)
        _steps(mismatched, 3)
        self.assertGreater(_update_gap(reference, mismatched, self.checkpoint["model"]), 0.3)


if __name__ == "__main__":
    unittest.main()
