"""The recipe's pi-Flow bookkeeping (models/recipe/flow.py) against the golden vectors, float64.

Run: /usr/bin/python3 -m unittest models.recipe.tests.test_golden
Golden dir: $PIFLOW_GOLDEN_DIR or the repository's fixtures/golden (skips if absent).
"""

from __future__ import annotations

import json
import os
import pathlib
import unittest

import torch

from models.recipe import flow

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
GOLDEN = os.environ.get("PIFLOW_GOLDEN_DIR", str(REPO_ROOT / "fixtures" / "golden"))


def _t(v):
    if isinstance(v, dict) and "shape" in v:
        data = [float(x) if isinstance(x, str) else x for x in v["data"]]
        if data and isinstance(data[0], bool):
            return torch.tensor(data, dtype=torch.bool).reshape(v["shape"])
        return torch.tensor(data, dtype=torch.float64).reshape(v["shape"])
    return v


def _load(name):
    path = os.path.join(GOLDEN, name)
    if not os.path.exists(path):
        raise unittest.SkipTest(f"golden vectors not found at {path} (set PIFLOW_GOLDEN_DIR)")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class GoldenCase(unittest.TestCase):
    def close(self, got, exp, tol, what):
        exp = _t(exp)
        got = torch.as_tensor(got, dtype=torch.float64).reshape(exp.shape)
        err = (got - exp).abs() - (tol["atol"] + tol["rtol"] * exp.abs())
        self.assertTrue(bool((err <= 0).all()), f"{what}: max excess {err.max().item():.3e}")


class TestTrainSampleT(GoldenCase):
    def test_train_sample_t_4nfe(self):
        c = _load("train_sample_t_4nfe.json")
        i, tol = c["inputs"], c["tolerance"]["float64"]
        idx, raw, sig, size = flow.train_sample_t(
            _t(i["raw_t_draws"]), i["nfe"], i["final_step_size_scale"], i["shift"], i["eps"]
        )
        self.assertEqual(idx.tolist(), c["expected"]["segment_index"])
        self.close(raw, c["expected"]["raw_t_src"], tol, "raw_t_src")
        self.close(sig, c["expected"]["sigma_t_src"], tol, "sigma_t_src")
        self.close(size, c["expected"]["segment_size"], tol, "segment_size")


class TestGmVelocity(GoldenCase):
    def test_all_gm_velocity_cases(self):
        index = _load("index.json")
        cases = [c for c in (index["cases"] if isinstance(index, dict) else index) if c["kind"] == "gm_velocity"]
        self.assertGreater(len(cases), 0)
        for meta in cases:
            c = _load(meta["file"])
            i, e, tol = c["inputs"], c["expected"], c["tolerance"]["float64"]
            p = flow.GMPolicy(_t(i["means_u"]), _t(i["logweights"]), _t(i["logstds"]), _t(i["x_src"]),
                              _t(i["sigma_src"]), eps=i["eps"])
            if i.get("dropout_mask") is not None:
                p.dropout_(_t(i["dropout_mask"]))
            p.temperature_(i["temperature"])
            self.close(p.velocity(_t(i["x_t"]), _t(i["sigma_t"])), e["u"], tol, f"{c['id']} u")


class TestPiidSegment(GoldenCase):
    def test_piid_gm_flux_like(self):
        c = _load("piid_gm_flux_like.json")
        i, e, tol = c["inputs"], c["expected"], c["tolerance"]["float64"]
        coef = i["teacher_coef"]

        def teacher(x, sigma):
            return coef["a"] * x + coef["b"] * sigma.reshape(-1, 1, 1, 1) + coef["c"]

        b = _t(i["x_src"]).shape[0]
        cfg = flow.PiidConfig(
            nfe=i["nfe"], final_step_size_scale=i["final_step_size_scale"], shift=i["shift"],
            num_intermediate_states=i["num_intermediate_states"], window_substeps=i["window_substeps"],
            total_substeps=i["total_substeps"], eps=i["eps"], loss_scale=i["loss_scale"],
        )
        policy = flow.GMPolicy(_t(i["means_u"]), _t(i["logweights"]), _t(i["logstds"]), _t(i["x_src"]),
                               torch.full((b,), i["sigma_src"], dtype=torch.float64), eps=i["policy_eps"])
        out = flow.piid_segment(
            teacher, policy, _t(i["x_src"]),
            torch.full((b,), i["raw_src"], dtype=torch.float64),
            torch.full((b,), i["sigma_src"], dtype=torch.float64),
            torch.full((b,), i["segment_size"], dtype=torch.float64),
            i["teacher_ratio"], cfg, _t(i["student_draws"]), _t(i["teacher_draws"]),
            _t(i["dropout_mask"]) if i.get("dropout_mask") is not None else None,
            get_x_t_dst=i["get_x_t_dst"],
        )
        for key in ("student_intervals", "teacher_intervals", "raw_a", "raw_b", "sigma_a", "x_a",
                    "tgt_u", "pred_u"):
            self.close(out[key], e[key], tol, key)
        self.close(out["window_size"], {"shape": [b], "data": [e["window_size"]] * b}, tol, "window_size")
        self.assertEqual(out["local_only"].tolist(), _t(e["local_only"]).tolist())
        self.close(out["loss"].reshape(1), {"shape": [1], "data": [e["loss"]]}, tol, "loss")
        if "dropout_mask_effective" in e:
            self.assertEqual(out["dropout_mask_effective"].tolist(), _t(e["dropout_mask_effective"]).tolist())


if __name__ == "__main__":
    unittest.main()
