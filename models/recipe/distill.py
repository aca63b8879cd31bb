"""pi-ID distillation of the GM student (K components) from the CFG teacher, resumable.

  nice -n 5 /usr/bin/python3 -m models.recipe.distill --teacher models/runs/teacher/checkpoints/last.pt \
      --run models/runs/student --until 20:33
  # default model v2 (64 px, sentence-vector conditioning; torch-py env): the same loss on the v2 data
  nice -n 19 .toolchain/torch-py/bin/python -m models.recipe.distill --v2 \
      --teacher models/v2/snapshots/teacher.pt --run models/runs/v2-student --until 20:33

Per step (fixtures/golden/README.md §3 'train_sample_t' + 'piid_segment', the paper's pi-ID with data):
  segment from uniform raw-time draws; x_src = (1-s) x0 + s eps from a data batch; the student's GM
  policy at (x_src, s_src); detached rollout of the policy with GM dropout to visited states; the teacher
  with CFG queried there; l2 between the policy's (window-averaged) velocity and the teacher's.
The teacher/student trajectory mix decays from all-teacher to all-student over --decay-steps.
"""

from __future__ import annotations

import argparse
import os

import torch

from . import trainloop
from .export import load_net
from .flow import GMPolicy, PiidConfig, piid_segment, train_sample_t
from .nets import EmojiNet, count_params, student_from_teacher
from .trainloop import StepResult


def cfg_teacher(teacher: EmojiNet, tokens: torch.Tensor, guidance: float):
    """u = u(empty) + g (u(prompt) - u(empty)); the empty prompt is all zeros: all padding (id 0) for
    token ids (v1), the zero vector for sentence embeddings (v2), as both trainers drop conditions."""
    uncond = torch.zeros_like(tokens)

    def u(x, sigma):
        # .float(): under --precision bf16 the network runs in bf16, the guidance and policy math in fp32
        out = teacher(torch.cat([x, x]), torch.cat([sigma, sigma]), torch.cat([tokens, uncond])).float()
        cond, unc = out.chunk(2)
        return unc + guidance * (cond - unc)

    return u


def _v2_data(a: argparse.Namespace):
    """The v2 loader, imported only for v2 runs (its packages live in the torch-py environment)."""
    from models.v2.data import V2Data
    from models.v2.prepare import DATA_DIR as V2_DATA_DIR

    if a.data == trainloop.DATA_DIR:
        a.data = V2_DATA_DIR
    return lambda args: V2Data(args.data).to(args.device)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--teacher", required=True)
    trainloop.add_run_args(p, batch=16, lr=2e-4, warmup=50, ema=0.995)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--decay-steps", type=int, default=600, help="teacher_ratio 1 -> 0 over these steps")
    p.add_argument("--nfe", type=int, default=4)
    p.add_argument("--shift", type=float, default=3.2)
    p.add_argument("--final-step-size-scale", type=float, default=0.5)
    p.add_argument("--total-substeps", type=int, default=128)
    p.add_argument("--gm-dropout", type=float, default=0.1)
    p.add_argument("--empty-p", type=float, default=0.05)
    p.add_argument("--v2", action="store_true",
                   help="v2 data (models/v2: 64 px, caption embeddings; --data defaults to its directory)")
    p.add_argument("--snapshot", default=None,
                   help="also write the EMA student in fp16 (+ config, step, piid) here at each checkpoint: "
                        "what the export reads, ~10 MB (the way a run on the device machine comes back)")
    trainloop.add_loop_args(p, log_every=10)
    trainloop.add_device_arg(p)
    a = p.parse_args(argv)
    if a.device != "cpu" and not a.v2:
        raise SystemExit(f"--device {a.device} needs --v2 (v1's data loader stays on the CPU)")
    if trainloop.launched_workers(main, argv, a):
        return

    run = trainloop.start_run(a, _v2_data(a) if a.v2 else None)
    log, data = run.log, run.data
    piid = PiidConfig(nfe=a.nfe, final_step_size_scale=a.final_step_size_scale, shift=a.shift,
                      total_substeps=a.total_substeps, gm_dropout=a.gm_dropout)
    teacher, tck = load_net(a.teacher)
    for prm in teacher.parameters():
        prm.requires_grad_(False)

    st = trainloop.resume_state(run, a.lr)
    if st is None:
        st = trainloop.fresh_state(student_from_teacher(teacher, a.k, seed=a.seed), a.lr, a.seed + 100, a.seed + 101)
        log(event="start", params=count_params(st.net), k=a.k, teacher_step=int(tck["step"]), piid=vars(piid))
    student = st.net
    student.train()
    teacher.to(a.device)  # the student was built from it on the CPU; train_loop places the student

    def checkpoint() -> None:
        settings = {
            "piid": {**vars(piid), "guidance": a.guidance, "decay_steps": a.decay_steps,
                     "teacher_step": int(tck["step"]), "batch": a.batch},
            "args": vars(a),
        }
        trainloop.save_checkpoint(st, run.ckpt_path, "student", settings)
        if a.snapshot:
            trainloop.save_snapshot(st, a.snapshot, "student-snapshot", settings)

    def loss_step() -> StepResult:
        gen = st.noise  # this worker's noise stream (train_loop splits it per worker; on the GPU there)
        on = gen.device
        x0, tokens = data.batch(st.rng, run.batch, empty_p=a.empty_p)
        b = x0.shape[0]
        _, raw_src, sigma_src, seg = train_sample_t(torch.rand(b, generator=gen, device=on), piid.nfe,
                                                    piid.final_step_size_scale, piid.shift, piid.eps)
        noise = torch.randn(x0.shape, generator=gen, device=on)
        s = sigma_src[:, None, None, None]
        x_src = (1 - s) * x0 + s * noise
        means_u, logweights, logstds = (t.float() for t in student(x_src, sigma_src, tokens))
        policy = GMPolicy(means_u, logweights, logstds, x_src, sigma_src, eps=piid.eps)
        teacher_ratio = 1.0 - min(st.step, a.decay_steps) / a.decay_steps if a.decay_steps > 0 else 0.0
        m = piid.num_intermediate_states
        out = piid_segment(
            cfg_teacher(teacher, tokens, a.guidance), policy, x_src, raw_src, sigma_src, seg, teacher_ratio,
            piid, torch.rand(b, m, generator=gen, device=on), torch.rand(b, m - 1, generator=gen, device=on),
            torch.rand(b, a.k, generator=gen, device=on) < piid.gm_dropout,
        )
        return out["loss"], {"teacher_ratio": round(teacher_ratio, 4), "logstd": round(float(logstds.detach().mean()), 3)}

    trainloop.train_loop(st, loss_step, checkpoint, a, run, step_time=2.0, skip_non_finite=True)


if __name__ == "__main__":
    main()
