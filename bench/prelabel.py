"""Prelabel serving benchmark: the served path's throughput against the raw model forward pass.

    .venv/bin/python bench/prelabel.py [--images 256] [--batch 16] [--streams 4] [--input-size 224]
                                       [--classes 10] [--seed 0] [--in-process]

It builds a resnet18 classifier with random weights, saved in the same state format training
produces (`SavedState.to_bytes`), and N generated JPEG photos (smooth colour fields with noise,
1.5x the input size); nothing is downloaded or trained.

raw     `Model.preprocess` once over all images, then `Model.forward` on batches of --batch in this
        process. Timed twice, before and after the served path; the better of the two counts, so
        background noise never flatters the ratio.
served  a local Ray started by `ModelService`, the model deployed with max_batch_size = --batch,
        and --streams asyncio tasks each streaming its share of the images through
        `ModelService.predict` at once. Includes decoding the JPEGs, which raw does not.
--in-process  the deployment's class (`Predictor`, its batch and streaming code) called directly
        in this process with `LocalBatcher` in place of `serve.batch`: no Ray needed.

Printed as one JSON line on stdout (progress goes to stderr):
  mode                          "ray" or "in_process"
  model, task, input_size       resnet18 classifier and its input side in pixels
  images, batch, streams        the run's size
  device, cpu_cores, torch_threads
  raw_images_per_s              forward passes only, on already decoded tensors
  raw_with_decode_images_per_s  preprocess + forward per batch, serially (for reference)
  served_images_per_s           images streamed back per second, all streams together
  ratio, target, meets_target   served / raw, the 0.8 target, and whether the run met it
  forward_calls, mean_batch     forward passes the deployment ran for the timed streams
  ray_start_s, deploy_s         ModelService.start() (Ray and Serve) and deploy() wall time
  ray_noop_roundtrip_ms         p50 / mean of a no-op deployment call awaited from asyncio,
                                one at a time: Ray's own overhead per request
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import sys
import time
from typing import Any

import numpy as np
import torch
from PIL import Image

from inference import nets
from inference.apps import ServeOptions
from inference.predict import Model, SavedState
from inference.serve import Predictor

TARGET = 0.8


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def random_state(classes: int, input_size: int, seed: int) -> bytes:
    """An untrained classifier in `TrainResult.state` form: same bytes, same load path."""
    torch.manual_seed(seed)
    architecture = nets.ARCHITECTURES["multiclass"]
    net = nets.build(architecture, classes)
    return SavedState("multiclass", list(range(1, classes + 1)), input_size, architecture,
                      net.state_dict()).to_bytes()


def jpegs(n: int, side: int, seed: int) -> list[bytes]:
    """Photo-like JPEGs: a smooth colour gradient with grain, so decoding costs what it would."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    out = []
    for _ in range(n):
        a, b, c = rng.uniform(0, 255, (3, 3))
        image = np.stack([a[i] * x + b[i] * y + c[i] * (1 - x) for i in range(3)], axis=-1) / 2
        image += rng.normal(0, 12, image.shape)
        buffer = io.BytesIO()
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def raw_forward(model: Model, images: list[bytes], batch: int) -> tuple[float, float]:
    """Images per second: forward only on preprocessed tensors, and preprocess + forward."""
    tensor = model.preprocess(images)
    for start in (0, batch):  # warm-up: allocator, kernels chosen for this shape, lazy init
        model.forward(tensor[start : start + batch])
    began = time.perf_counter()
    for start in range(0, len(images), batch):
        model.forward(tensor[start : start + batch])
    forward_only = len(images) / (time.perf_counter() - began)
    began = time.perf_counter()
    for start in range(0, len(images), batch):
        model.forward(model.preprocess(images[start : start + batch]))
    with_decode = len(images) / (time.perf_counter() - began)
    return forward_only, with_decode


def shares(images: list[bytes], streams: int) -> list[list[tuple[int, bytes]]]:
    items = list(enumerate(images))
    return [items[i::streams] for i in range(streams)]


async def served_ray(args: argparse.Namespace, state: bytes, images: list[bytes]) -> dict[str, Any]:
    from ray import serve

    from inference.apps import app_name
    from inference.client import ModelService

    options = ServeOptions(max_batch_size=args.batch, idle_to_zero_s=None)
    service = ModelService(options=options)
    began = time.perf_counter()
    await service.start()
    started = time.perf_counter() - began
    log(f"Ray and Serve started in {started:.1f} s")
    began = time.perf_counter()
    await service.deploy(1, 1, state)
    deployed = time.perf_counter() - began
    log(f"deployed in {deployed:.1f} s")
    try:
        handle = await asyncio.to_thread(serve.get_app_handle, app_name(1, 1))
        warm = list(enumerate(images[: 2 * args.batch]))
        async for _ in service.predict(1, 1, warm):
            pass
        before = await handle.stats.remote()

        async def one(items: list[tuple[int, bytes]]) -> int:
            return len([p async for p in service.predict(1, 1, items)])

        began = time.perf_counter()
        counts = await asyncio.gather(*(one(s) for s in shares(images, args.streams)))
        elapsed = time.perf_counter() - began
        after = await handle.stats.remote()
        assert sum(counts) == len(images), counts
        noop = await noop_roundtrips()
    finally:
        await service.shutdown()
    calls = after["forward_calls"] - before["forward_calls"]
    return {
        "served_images_per_s": len(images) / elapsed,
        "forward_calls": calls,
        "mean_batch": (after["images"] - before["images"]) / max(1, calls),
        "served_device": after["device"],
        "ray_start_s": round(started, 2),
        "deploy_s": round(deployed, 2),
        "ray_noop_roundtrip_ms": noop,
    }


async def noop_roundtrips(calls: int = 300) -> dict[str, float]:
    """A deployment that does nothing, called one request at a time: Ray's cost per request."""
    from ray import serve

    @serve.deployment(ray_actor_options={"num_cpus": 0})
    class Noop:
        async def ping(self) -> None:
            return None

    handle = await asyncio.to_thread(serve.run, Noop.bind(), name="colabel-bench-noop", route_prefix=None)
    for _ in range(20):
        await handle.ping.remote()
    times = []
    for _ in range(calls):
        began = time.perf_counter()
        await handle.ping.remote()
        times.append((time.perf_counter() - began) * 1000)
    await asyncio.to_thread(serve.delete, "colabel-bench-noop")
    return {"p50": round(statistics.median(times), 3), "mean": round(statistics.fmean(times), 3)}


async def served_in_process(args: argparse.Namespace, state: bytes, images: list[bytes]) -> dict[str, Any]:
    options = ServeOptions(max_batch_size=args.batch, idle_to_zero_s=None)
    predictor = Predictor(state, options, local_batching=True)
    try:
        async def one(items: list[tuple[int, bytes]]) -> int:
            return sum([len(chunk) async for chunk in predictor.stream(items)])

        await one(list(enumerate(images[: 2 * args.batch])))
        before = predictor.stats()
        began = time.perf_counter()
        counts = await asyncio.gather(*(one(s) for s in shares(images, args.streams)))
        elapsed = time.perf_counter() - began
        after = predictor.stats()
        assert sum(counts) == len(images), counts
    finally:
        await predictor.close()
    calls = after["forward_calls"] - before["forward_calls"]
    return {
        "served_images_per_s": len(images) / elapsed,
        "forward_calls": calls,
        "mean_batch": (after["images"] - before["images"]) / max(1, calls),
        "served_device": after["device"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--in-process", action="store_true", help="the deployment's class without Ray")
    args = parser.parse_args()

    state = random_state(args.classes, args.input_size, args.seed)
    images = jpegs(args.images, args.input_size * 3 // 2, args.seed)
    model = Model.load(state)
    kilobytes = statistics.fmean(map(len, images)) / 1024
    log(f"{len(images)} JPEGs, mean {kilobytes:.0f} kB; device {model.device}")

    raw_first, with_decode = raw_forward(model, images, args.batch)
    log(f"raw forward: {raw_first:.1f} images/s (with decode {with_decode:.1f})")
    if args.in_process:
        served = asyncio.run(served_in_process(args, state, images))
    else:
        served = asyncio.run(served_ray(args, state, images))
    log(f"served: {served['served_images_per_s']:.1f} images/s")
    raw_again, _ = raw_forward(model, images, args.batch)
    log(f"raw forward again: {raw_again:.1f} images/s")
    raw = max(raw_first, raw_again)
    ratio = served["served_images_per_s"] / raw
    result = {
        "mode": "in_process" if args.in_process else "ray",
        "model": "resnet18-classifier",
        "task": "multiclass",
        "input_size": args.input_size,
        "images": args.images,
        "batch": args.batch,
        "streams": args.streams,
        "device": str(model.device),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "raw_images_per_s": round(raw, 2),
        "raw_with_decode_images_per_s": round(with_decode, 2),
        **{k: round(v, 2) if isinstance(v, float) else v for k, v in served.items()},
        "ratio": round(ratio, 3),
        "target": TARGET,
        "meets_target": ratio >= TARGET,
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
