"""Ray Serve deployment of the PyTorch backend: one replica per GPU, autoscaled on queue length.

Each replica loads the models once (`ray_actor_options: {num_gpus: 1}` gives it its own GPU) and serves
the same FastAPI app as `python -m piflow_torch.server` (built after the constructor through Ray's
`__serve_build_asgi_app__` hook), so protocol, limits, errors and request batching are one
implementation: Ray's proxy lets up to `max_ongoing_requests` requests into a replica at once, and the
replica's own batcher groups those of one model, size and NFE into shared forwards (a second batching
layer, `@serve.batch`, would split the same requests twice). Autoscaling follows
`target_ongoing_requests` per replica, i.e. queue length.

Cancellation: a client disconnect reaches the replica that runs the stream (Ray cancels the request).
`POST /v1/generations/{id}/cancel` may land on any replica, so replicas register their live generations
with one small named actor (`CancelBoard`); a cancel for an id another replica owns is left there, and
each replica collects its own every `CANCEL_POLL_S`, i.e. before its next NFE or two.

Config file: `torch-backend/serve.yaml` (`serve run torch-backend/serve.yaml`); from Python:
`serve.run(build_app({'models': ['pi-flux1-4nfe']}))`. The shared secret comes from the replicas'
environment (`PIFLOW_BACKEND_SECRET`, set where `ray start` / `serve run` runs), never from the config.
"""

from __future__ import annotations

import threading
from collections import defaultdict

import ray
from ray import serve

from .manifest import load_manifest
from .pipeline.generate import load_model
from .server.app import create_app
from .server.options import pick_device, pick_dtype, secret_from_env
from .server.service import Service, ServiceOptions

CANCEL_BOARD = 'piflow-cancel-board'
CANCEL_POLL_S = 0.2


@ray.remote(num_cpus=0)
class CancelBoard:
    """Which replica owns which live generation, and cancels waiting for their owner to collect."""

    def __init__(self):
        self.owners: dict[str, str] = {}
        self.pending: dict[str, set[str]] = defaultdict(set)

    def register(self, generation_id: str, replica: str):
        self.owners[generation_id] = replica

    def unregister(self, generation_id: str):
        self.owners.pop(generation_id, None)

    def cancel(self, generation_id: str) -> bool:
        owner = self.owners.get(generation_id)
        if owner is None:
            return False
        self.pending[owner].add(generation_id)
        return True

    def collect(self, replica: str) -> list[str]:
        return sorted(self.pending.pop(replica, ()))


class RayCancelRelay:
    """The replica's side of the board: registration, remote cancels, and the collecting thread."""

    def __init__(self, replica: str):
        self.replica = replica
        self.board = CancelBoard.options(name=CANCEL_BOARD, get_if_exists=True, lifetime='detached').remote()
        self._stop = threading.Event()

    def register(self, generation_id: str):
        self.board.register.remote(generation_id, self.replica)

    def unregister(self, generation_id: str):
        self.board.unregister.remote(generation_id)

    async def cancel_elsewhere(self, generation_id: str) -> bool:
        return await self.board.cancel.remote(generation_id)

    def start(self, service: Service):
        def collect():
            while not self._stop.wait(CANCEL_POLL_S):
                for generation_id in ray.get(self.board.collect.remote(self.replica)):
                    service.cancel(generation_id, 'cancel request')

        threading.Thread(target=collect, name='piflow-cancel-relay', daemon=True).start()

    def stop(self):
        self._stop.set()


@serve.deployment(
    name='PiflowTorch',
    ray_actor_options={'num_gpus': 1},
    max_ongoing_requests=16,
    autoscaling_config={'min_replicas': 1, 'max_replicas': 8, 'target_ongoing_requests': 8},
    graceful_shutdown_timeout_s=60,
)
@serve.ingress()
class PiflowTorch:
    """One replica: the models of `models` on this replica's device, behind the protocol app."""

    def __init__(self, models: list[str], dtype: str = 'auto', device: str = 'auto',
                 prompt_cache: int = 64, preview_size: int = 64, max_body_bytes: int = 64 * 1024,
                 service: dict | None = None):
        self.secret = secret_from_env()
        torch_device = pick_device(device)
        torch_dtype = pick_dtype(dtype, torch_device)
        runtimes = [load_model(load_manifest(m), dtype=torch_dtype, device=torch_device,
                               prompt_cache_size=prompt_cache, preview_size=preview_size) for m in models]
        self.relay = RayCancelRelay(serve.get_replica_context().replica_id.unique_id)
        self.service = Service(runtimes, ServiceOptions(**(service or {})), execution_provider=torch_device.type,
                               cancel_relay=self.relay)
        self.relay.start(self.service)
        self.max_body_bytes = max_body_bytes

    def __serve_build_asgi_app__(self):
        return create_app(self.service, secret=self.secret, max_body_bytes=self.max_body_bytes)

    def check_health(self):
        if self.service.draining:
            raise RuntimeError('replica is draining')

    def __del__(self):
        self.relay.stop()
        self.service.drain()


def build_app(args: dict) -> serve.Application:
    """Application builder (`import_path: piflow_torch.ray_serve:build_app`; `args` from the config)."""
    args = dict(args)
    if not args.get('models'):
        raise ValueError('args.models must list at least one manifest path or bundled id')
    return PiflowTorch.bind(**args)
