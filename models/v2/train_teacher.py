"""Train the v2 teacher: flow matching at 64 px in pixel space (patch-4 stem), conditioned on
all-MiniLM-L6-v2 caption embeddings, CFG by condition dropout, EMA; resumable, in bounded chunks.

  nice -n 19 .toolchain/torch-py/bin/python -m models.v2.train_teacher --run models/runs/v2-teacher --minutes 150 \
      --workers 2 --batch 64    # two data-parallel 1-thread processes: 1.72x the images/s of one (README)

Checkpoints: <run>/checkpoints/last.pt (full state, atomic, every --ckpt-minutes and at the end; rerunning
resumes). Snapshots: at the first checkpoint --snapshot-every steps after the last one, and at the end, the EMA weights in fp16 with the step and
config go to --snapshot (default models/v2/snapshots/teacher.pt, committed at milestones so the run
survives this machine); with no last.pt, --resume-snapshot starts from one (weights = EMA, fresh AdamW
after a new warm-up). Loss: JSON lines in <run>/train.log.jsonl.
"""

from __future__ import annotations

import argparse
import os

import torch

from models.recipe import trainloop
from models.recipe.nets import EmojiNet, NetConfig, count_params, with_whitened_text
from models.recipe.train_teacher import flow_loss
from models.recipe.trainloop import StepResult
from models.v2.data import V2Data
from models.v2.prepare import DATA_DIR
from models.v2.sources import ROOT
from models.v2.text import DIM

SNAPSHOT = os.path.join(ROOT, "models", "v2", "snapshots", "teacher.pt")


def teacher_config(channels: int) -> NetConfig:
    return NetConfig(vocab_size=1, channels=channels, image_size=64, patch=4, text_input="vector", text_dim=DIM)


def from_snapshot(path: str, lr: float, seed: int) -> trainloop.TrainState:
    ck = torch.load(path, map_location="cpu")
    net = EmojiNet(NetConfig.from_dict(ck["config"]))
    net.load_state_dict({k: v.float() for k, v in ck["ema"].items()})
    st = trainloop.fresh_state(net, lr, seed + ck["step"], seed + ck["step"] + 1)
    st.step = int(ck["step"])
    return st


def whitened_state(st: trainloop.TrainState, data: V2Data, a: argparse.Namespace) -> trainloop.TrainState:
    """st with its net (and EMA) text-whitened on every stored caption embedding, and a fresh AdamW."""
    vectors = torch.from_numpy(data.text.reshape(-1, data.text.shape[-1]).astype("float32"))
    net = with_whitened_text(st.net, vectors, a.whiten_text)
    fresh = trainloop.fresh_state(net, a.lr, 0, 0)
    fresh.ema = with_whitened_text(st.ema, vectors, a.whiten_text)
    for pe in fresh.ema.parameters():
        pe.requires_grad_(False)
    fresh.step, fresh.rng, fresh.gen = st.step, st.rng, st.gen
    return fresh


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    trainloop.add_run_args(p, batch=32, lr=5e-4, warmup=200, ema=0.9995)
    p.set_defaults(data=DATA_DIR)
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--snapshot", default=SNAPSHOT)
    p.add_argument("--snapshot-every", type=int, default=2000)
    p.add_argument("--resume-snapshot", default=None)
    p.add_argument("--whiten-text", type=float, default=None, metavar="EPS",
                   help="whiten the text input (recipe/nets.py with_whitened_text, eps EPS) when starting "
                        "fresh or from --resume-snapshot: the same function, other training dynamics")
    # 3.2 = the sampler's shift. Paired A/B from the 57,955 snapshot, ~13.3 k steps each (models/README.md):
    # top-10 20.9 % -> 37.7 %, median rank 166 -> 62, ranks e^0.95 = 2.6x nearer; steps <= 57,955 used 1
    p.add_argument("--sigma-shift", type=float, default=3.2,
                   help="warp the training sigmas as the sampler's shift does (1 = plain logit-normal)")
    # bf16 on one thread: 2.0x the steps of fp32 on two threads on this shared 2-core machine (README)
    trainloop.add_loop_args(p, log_every=25, threads=1, precision="auto")
    trainloop.add_device_arg(p)
    a = p.parse_args(argv)
    if trainloop.launched_workers(main, argv, a):
        return

    run = trainloop.start_run(a, lambda args: V2Data(args.data).to(args.device))
    log, data = run.log, run.data
    st = trainloop.resume_state(run, a.lr)
    with_optimiser_state = st is not None  # a checkpoint's AdamW moments, which whitening would invalidate
    if st is None and a.resume_snapshot:
        st = from_snapshot(a.resume_snapshot, a.lr, a.seed)
        a.warmup_start = st.step  # the fresh optimiser warms up again
        log(event="resume-snapshot", step=st.step, path=a.resume_snapshot)
    if st is None:
        cfg = teacher_config(a.channels)
        torch.manual_seed(a.seed)
        st = trainloop.fresh_state(EmojiNet(cfg), a.lr, a.seed, a.seed + 1)
        log(event="start", params=count_params(st.net), config=cfg.to_dict(), images=len(data))
    if a.whiten_text is not None and not st.net.cfg.text_whiten:
        if with_optimiser_state:
            raise SystemExit("--whiten-text starts a run fresh or from --resume-snapshot (a checkpoint's "
                             "AdamW moments are in the un-whitened coordinates)")
        st = whitened_state(st, data, a)
        log(event="whiten-text", eps=a.whiten_text, step=st.step)

    last_snapshot = {"step": st.step}

    def snapshot() -> None:
        trainloop.save_snapshot(st, a.snapshot, "teacher-snapshot", {"args": vars(a)})
        last_snapshot["step"] = st.step
        log(event="snapshot", step=st.step, path=a.snapshot)

    def checkpoint() -> None:
        trainloop.save_checkpoint(st, run.ckpt_path, "teacher", {"args": vars(a)})
        if st.step - last_snapshot["step"] >= a.snapshot_every:
            snapshot()

    def loss_step() -> StepResult:
        x0, text = data.batch(st.rng, run.batch)
        return flow_loss(st.net, x0, text, st.noise, a.sigma_shift), {}

    trainloop.train_loop(st, loss_step, checkpoint, a, run, step_time=1.0)
    if run.workers.chief:
        snapshot()


if __name__ == "__main__":
    main()
