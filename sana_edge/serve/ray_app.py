"""`sana-edge serve --ray`: the same ASGI app (app.create_app) as a Ray Serve deployment.

Each replica builds the app on its own node (Serve's ingress builder), after checking that the
node reads the driver's exports (manifest sha256, see sana_edge.batch.worker), and asks Ray for
`threads` CPUs, the ONNX Runtime threads it runs with. Ray Serve's proxy binds `host:port`
and spreads requests over the replicas: each replica takes one request running and one waiting,
and Serve queues the rest (--max-queue per replica; beyond it Serve answers 503).
"""

from __future__ import annotations

import dataclasses
import secrets
import sys
import threading

from ..batch.ray_runner import connect
from ..batch.worker import check_export, manifest_digest
from .app import ServeConfig, create_app

APP_NAME = "sana-edge"


def replica_app_builder(config: ServeConfig, digests: list[str]):
    """A plain function (Serve calls it on each replica) that returns the checked app."""

    def build():
        import ray

        node = ray.util.get_node_ip_address()
        for folder, digest in zip(config.models, digests):
            check_export(folder, digest, node)
        return create_app(config)

    return build


def deployment(config: ServeConfig, replicas: int):
    from ray import serve

    digests = [manifest_digest(folder) for folder in config.models]
    ingress = serve.ingress(replica_app_builder(config, digests))

    class SanaEdgeReplica:
        """One replica: the app built by the ingress builder; no routes of its own."""

    return serve.deployment(
        name=APP_NAME, num_replicas=replicas, ray_actor_options={"num_cpus": config.threads or 1},
        # One running and one waiting per replica: Serve's router prefers replicas on the proxy's
        # node until they are full, so a larger number would pile work onto one node. Requests
        # beyond wait in Serve's queue, bounded like --max-queue per replica (503 beyond it).
        max_ongoing_requests=2, max_queued_requests=max(1, config.max_queue * replicas),
    )(ingress(SanaEdgeReplica))


def for_cluster(config: ServeConfig) -> ServeConfig:
    """Absolute export paths (replicas run elsewhere) and one url secret for all replicas."""
    return dataclasses.replace(config, models=tuple(p.resolve() for p in config.models),
                               output_dir=config.output_dir.resolve() if config.output_dir else None,
                               url_secret=config.url_secret or secrets.token_hex(32), trust_disconnect=False)


def start(config: ServeConfig, address: str | None, replicas: int, host: str, port: int) -> None:
    from ray import serve

    connect(address)
    # One HTTP proxy, on the head node (where this command runs): one address for the whole
    # cluster, and several "nodes" on one machine do not race for the same port.
    serve.start(proxy_location="HeadOnly", http_options={"host": host, "port": port})
    serve.run(deployment(for_cluster(config), replicas).bind(), name=APP_NAME, route_prefix="/", blocking=False)


def run_on_ray_serve(config: ServeConfig, address: str | None, replicas: int, host: str, port: int) -> None:
    """Deploy, then wait until Ctrl-C / SIGTERM; the deployment is removed on the way out."""
    import ray
    from ray import serve

    if replicas > 1 and config.output_dir is None:
        print("warning: with several replicas, `url` responses need --output-dir on a folder every replica "
              "reads (a shared filesystem); b64_json responses work without it", file=sys.stderr)
    try:
        start(config, address, replicas, host, port)
        print(f"sana-edge serving on Ray Serve: {replicas} replica(s), http://{host}:{port} "
              "(page at /, API at /v1); Ctrl-C stops it", file=sys.stderr, flush=True)
        threading.Event().wait()
    finally:
        if ray.is_initialized():
            serve.shutdown()
            ray.shutdown()
