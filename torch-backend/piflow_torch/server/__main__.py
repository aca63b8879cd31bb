"""`python -m piflow_torch.server --model <manifest or id> [--port …] [--host …] [--dtype …] [--device …]`.

Loads every model before listening (a bad manifest, an unsupported adapter or a missing download is a
start-up error with a message, exit status 1), then serves under uvicorn. stdout carries one line,
`piflow-torch listening on http://HOST:PORT`, once the socket accepts; logs go to stderr.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys

import uvicorn

from ..errors import PiflowTorchError
from ..manifest import ManifestError, load_manifest
from ..pipeline.generate import load_model
from .app import create_app
from .options import check_ranges, parser, pick_device, pick_dtype, secret_from_env
from .service import Service, ServiceOptions


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ':' in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


def _after_graceful_shutdown(_signum, _frame):
    pass


def main(argv: list[str] | None = None):
    args = parser().parse_args(argv)
    check_ranges(args)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format='%(asctime)s %(name)s %(message)s')
    secret = secret_from_env()
    device = pick_device(args.device)
    dtype = pick_dtype(args.dtype, device)
    runtimes = []
    for model in args.model:
        try:
            loaded = load_manifest(model)
            runtimes.append(load_model(loaded, dtype=dtype, device=device, prompt_cache_size=args.prompt_cache,
                                       preview_size=args.preview_size))
        except (ManifestError, PiflowTorchError, ValueError, OSError) as error:
            print(f'piflow-torch: cannot serve {model}: {error}', file=sys.stderr)
            raise SystemExit(1) from None
    options = ServiceOptions(max_batch_rows=args.max_batch_rows, max_wait_ms=args.max_wait_ms,
                             queue_limit=args.queue_limit, queue_timeout_ms=args.queue_timeout_ms,
                             debug_step_delay_ms=args.debug_step_delay_ms)
    service = Service(runtimes, options, execution_provider=device.type)
    app = create_app(service, secret=secret, max_body_bytes=args.max_body_bytes)
    sock = _listen(args.host, args.port)
    host, port = sock.getsockname()[:2]
    shown = f'[{host}]' if ':' in host else host
    print(f'piflow-torch listening on http://{shown}:{port}', flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level='warning', timeout_graceful_shutdown=30,
                                           lifespan='off'))
    # uvicorn handles SIGTERM/SIGINT while it runs (stop accepting, let open streams finish for up to
    # 30 s) and then re-raises the signal into the handlers it found: these, so a drained server exits 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _after_graceful_shutdown)
    try:
        server.run(sockets=[sock])
    finally:
        service.drain()


if __name__ == '__main__':
    main()
