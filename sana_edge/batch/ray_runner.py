"""`sana-edge batch --ray`: the items on Ray Data, `map_batches` over a pool of actors.

Each actor loads the pipeline once (after checking that its node reads the driver's export),
asks Ray for `cpus_per_worker` CPUs and runs ONNX Runtime with exactly that many intra-op
threads, so N actors on a node use its cores without oversubscribing them. The pool size
defaults to every CPU of the cluster divided by `cpus_per_worker`: the same command uses every
core of every node. Results stream back to the driver, which writes files and the index.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .items import BatchItem
from .worker import ItemRenderer, check_export, manifest_digest


ACTOR_START_TIMEOUT_S = 600  # loading a full-size export on a busy node takes minutes


class RayItemRenderer:
    """A Ray Data actor: one ItemRenderer for its lifetime, one item per batch."""

    def __init__(self, export_dir: str, manifest_sha256: str, threads: int, verify: bool):
        import ray

        context = ray.get_runtime_context()
        node = {"node_id": context.get_node_id(), "ip": ray.util.get_node_ip_address()}
        check_export(Path(export_dir), manifest_sha256, f"{node['ip']} ({node['node_id'][:8]})")
        self.renderer = ItemRenderer(Path(export_dir), threads=threads, verify=verify, node=node)

    def __call__(self, batch: dict) -> dict:
        records, pngs = [], []
        for text in batch["item"]:
            record, png = self.renderer.render(BatchItem.from_json(str(text)))
            records.append(json.dumps(record))
            pngs.append(png or b"")
        return {"record": np.array(records, dtype=object), "png": np.array(pngs, dtype=object)}


def connect(address: str | None, **init_options) -> None:
    """Join the cluster at `address` ("auto", "HOST:PORT"), or start a local one when None."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address or None, include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=False, **init_options)


def ray_results(export_dir: Path, address: str | None, workers: int | None, cpus_per_worker: int, verify: bool):
    def results(todo: list[BatchItem]) -> Iterator[tuple[dict, bytes | None]]:
        if not todo:
            return
        import ray
        import ray.data
        from ray.data import ActorPoolStrategy

        connect(address)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the driver draws its own bar
        context.execution_options.preserve_order = False  # write each image as soon as it is made
        context.print_on_execution_start = False
        # Start every actor (each checks its node's export) before handing out items, so the work
        # spreads over the whole pool instead of going to whichever actor loaded first.
        context.wait_for_min_actors_s = ACTOR_START_TIMEOUT_S
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        cluster_cpus = int(ray.cluster_resources().get("CPU", 1))
        size = workers or max(1, cluster_cpus // cpus_per_worker)
        dataset = ray.data.from_items([{"item": item.to_json()} for item in todo], override_num_blocks=len(todo))
        dataset = dataset.map_batches(
            RayItemRenderer, batch_size=1, batch_format="numpy", num_cpus=cpus_per_worker,
            compute=ActorPoolStrategy(size=min(size, len(todo)), max_tasks_in_flight_per_actor=2),
            fn_constructor_kwargs={"export_dir": str(Path(export_dir).resolve()),
                                   "manifest_sha256": manifest_digest(export_dir),
                                   "threads": cpus_per_worker, "verify": verify})
        try:
            for row in dataset.iter_rows():
                yield json.loads(row["record"]), (bytes(row["png"]) or None)
        finally:
            ray.shutdown()  # leaves the cluster; a local Ray started here stops

    return results
