"""Gradients of the recipe's pi-Flow math (models/recipe/flow.py), float64: the hand-written backward of
_MixtureMean and the policy's average velocity through the compacting rollout, against numerical differences
(torch.autograd.gradcheck). The values themselves are pinned by test_golden.py.

Run: /usr/bin/python3 -m unittest models.recipe.tests.test_flow_grad
"""

from __future__ import annotations

import unittest

import torch

from models.recipe import flow


def _f64(*shape, gen, scale=1.0):
    return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).requires_grad_()


class TestMixtureMeanBackward(unittest.TestCase):
    def test_gradcheck_every_input(self):
        g = torch.Generator().manual_seed(3)
        m, nu, base = _f64(2, 3, 2, 5, gen=g), _f64(2, 2, 5, gen=g), _f64(2, 3, 5, gen=g)
        inv_d = (torch.rand(2, 1, 1, generator=g, dtype=torch.float64) + 0.5).requires_grad_()
        self.assertTrue(torch.autograd.gradcheck(flow._MixtureMean.apply, (m, nu, base, inv_d)))

    def test_forward_is_the_softmax_weighted_mean(self):
        g = torch.Generator().manual_seed(4)
        m, nu, base = (t.detach() for t in (_f64(2, 4, 3, 6, gen=g), _f64(2, 3, 6, gen=g), _f64(2, 4, 6, gen=g)))
        inv_d = torch.tensor([0.7, 1.3], dtype=torch.float64).reshape(2, 1, 1)
        w = torch.softmax(base + inv_d * (m * nu[:, None]).sum(dim=2), dim=1)
        expected = (w[:, :, None] * m).sum(dim=1)
        torch.testing.assert_close(flow._MixtureMean.apply(m, nu, base, inv_d), expected, rtol=1e-12, atol=1e-12)


class TestRolloutGradient(unittest.TestCase):
    def test_gradcheck_average_velocity_over_spans_of_different_lengths(self):
        # 3 samples with 1, 5 and 9 substeps: the rollout drops finished samples part-way (GMPosterior.take);
        # the first is local-only (< 2 substeps), as in piid_segment's windows
        g = torch.Generator().manual_seed(5)
        b, k, c, h, w = 3, 2, 2, 2, 1
        ts, shift, eps = 16, 3.2, 1e-4
        raw_a = torch.tensor([0.9, 0.7, 0.6], dtype=torch.float64)
        raw_end = raw_a - torch.tensor([1, 5, 9], dtype=torch.float64) / ts
        sigma_a = flow.warp(raw_a, shift)
        x_a = torch.randn(b, c, h, w, generator=g, dtype=torch.float64)
        x_src = torch.randn(b, c, h, w, generator=g, dtype=torch.float64)
        sigma_src = torch.full((b,), 0.95, dtype=torch.float64)

        def pred(means_u, logweights, logstds):
            policy = flow.GMPolicy(means_u, logweights, logstds, x_src, sigma_src, eps=eps)
            policy.dropout_(torch.tensor([[True, False], [False, False], [False, True]]))
            out, local_only = flow.average_velocity(policy, x_a, sigma_a, raw_a, raw_end, shift, ts, eps)
            self.assertEqual(local_only.tolist(), [True, False, False])
            return out

        inputs = (_f64(b, k, c, h, w, gen=g, scale=0.5), _f64(b, k, 1, h, w, gen=g),
                  (torch.full((b, 1, 1, 1, 1), -1.0, dtype=torch.float64)).requires_grad_())
        self.assertTrue(torch.autograd.gradcheck(pred, inputs))

    def test_compacted_rollout_matches_each_sample_alone(self):
        # the batch result per sample equals that sample's own rollout (no finished-sample masking needed)
        g = torch.Generator().manual_seed(6)
        b, k, c, h, w = 3, 3, 2, 2, 2
        x_src = torch.randn(b, c, h, w, generator=g, dtype=torch.float64)
        sigma = torch.tensor([0.9, 0.8, 0.7], dtype=torch.float64)
        outputs = (torch.randn(b, k, c, h, w, generator=g, dtype=torch.float64),
                   torch.randn(b, k, 1, h, w, generator=g, dtype=torch.float64),
                   torch.full((b, 1, 1, 1, 1), -0.5, dtype=torch.float64))
        policy = flow.GMPolicy(*outputs, x_src, sigma)
        raw_src, raw_dst = flow.unwarp(sigma, 3.2), torch.tensor([0.5, 0.1, 0.45], dtype=torch.float64)
        x, sig, raw, n = flow.rollout(policy, x_src, sigma, raw_src, raw_dst, 3.2, 32)
        self.assertEqual(len(set(n.tolist())), 3)
        for i in range(b):
            one = flow.GMPolicy(*(t[i:i + 1] for t in outputs), x_src[i:i + 1], sigma[i:i + 1])
            xi, si, ri, _ = flow.rollout(one, x_src[i:i + 1], sigma[i:i + 1], raw_src[i:i + 1], raw_dst[i:i + 1],
                                         3.2, 32)
            torch.testing.assert_close(x[i:i + 1], xi, rtol=0, atol=0)
            torch.testing.assert_close(sig[i:i + 1], si, rtol=0, atol=0)
            torch.testing.assert_close(raw[i:i + 1], ri, rtol=0, atol=0)


if __name__ == "__main__":
    unittest.main()
