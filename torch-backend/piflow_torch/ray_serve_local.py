"""The Ray Serve deployment of `torch-backend/serve.yaml` on a local CPU cluster, for tests and trials
without a GPU: `python -m piflow_torch.ray_serve_local --model MANIFEST --replicas 2 --port 8790`.

It starts a fresh local Ray cluster (one CPU per replica), deploys the config file's application with
its own options (max_ongoing_requests, service args, graceful shutdown) but a fixed replica count, no
GPU, fp32 on the CPU and the given models, prints `piflow-torch-ray listening on http://HOST:PORT` once
Ray's HTTP proxy answers, and shuts the deployment and the cluster down on SIGTERM / SIGINT. The shared
secret comes from PIFLOW_BACKEND_SECRET, as for the plain server. On a GPU host use `serve run
torch-backend/serve.yaml` instead (README "Serve pi-FLUX.1 / pi-Qwen-Image on your GPU").
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
import urllib.request
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[1] / 'serve.yaml'


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='python -m piflow_torch.ray_serve_local', description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', action='append', required=True, help='manifest path or bundled id (repeatable)')
    parser.add_argument('--replicas', type=int, default=2)
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--port', type=int, default=8790)
    parser.add_argument('--debug-step-delay-ms', type=float, default=0, help='test-only: sleep after every NFE')
    return parser.parse_args(argv)


def _wait_until_answering(url: str, timeout_s: float = 120):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f'{url}/readyz', timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f'the Ray Serve deployment did not become ready at {url}')
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    options = _args(argv)
    import ray
    import yaml
    from ray import serve

    from .ray_serve import PiflowTorch
    from .server.options import secret_from_env

    secret = secret_from_env()
    app_config = yaml.safe_load(CONFIG.read_text())['applications'][0]
    deployment = {k: v for k, v in app_config['deployments'][0].items() if k != 'name'}
    deployment.update(
        ray_actor_options={**deployment['ray_actor_options'], 'num_cpus': 1, 'num_gpus': 0},
        autoscaling_config=None, num_replicas=options.replicas)
    args = {**app_config['args'], 'models': options.model, 'dtype': 'fp32', 'device': 'cpu',
            'service': {**app_config['args'].get('service', {}),
                        'debug_step_delay_ms': options.debug_step_delay_ms}}
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    ray.init(num_cpus=options.replicas, include_dashboard=False, log_to_driver=False,
             runtime_env={'env_vars': {'PIFLOW_BACKEND_SECRET': secret,
                                       'PYTHONPATH': str(CONFIG.parent),
                                       'OMP_NUM_THREADS': os.environ.get('OMP_NUM_THREADS', '1')}})
    try:
        serve.start(http_options={'host': options.host, 'port': options.port})
        serve.run(PiflowTorch.options(**deployment).bind(**args), name=app_config['name'],
                  route_prefix=app_config['route_prefix'])
        url = f'http://{options.host}:{options.port}'
        _wait_until_answering(url)
        print(f'piflow-torch-ray listening on {url}', flush=True)
        stop.wait()
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
