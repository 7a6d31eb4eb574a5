"""ModelService against a real local Ray: deploy, streamed and batched predictions, embeddings,
stopping, training as a Ray task, and a clear "down" when Ray cannot be reached."""

from __future__ import annotations

import asyncio
import io
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
import torch
from PIL import Image

from inference import nets
from inference.apps import ServeOptions, app_name
from inference.client import ModelService, ModelServiceDown, ModelServiceError
from inference.predict import SavedState, Task
from inference.train import Sample, TrainConfig, TrainResult
from tests.reliability import Measured

# Ray is imported inside the tests, where these marks apply, not at collection.
pytestmark = [
    # Ray Serve's own config models still pass pydantic v1-style Field extras.
    pytest.mark.filterwarnings(
        "ignore:Using extra keyword arguments on `Field`:pydantic.warnings.PydanticDeprecatedSince20"
    ),
]

SIZE = 32
CLASSES = [11, 12, 13]
BATCH = 8


def model_state(task: Task) -> bytes:
    """An untrained network saved the way training saves one."""
    torch.manual_seed(0)
    architecture = nets.ARCHITECTURES[task]
    net = nets.build(architecture, len(CLASSES))
    return SavedState(task, CLASSES, SIZE, architecture, net.state_dict()).to_bytes()


def jpeg(seed: int, shade: int | None = None) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 40, (48, 40, 3), dtype=np.uint8)
    pixels += np.uint8(shade if shade is not None else rng.integers(0, 200))
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG")
    return out.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_reports_down_when_ray_address_points_at_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    address = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("RAY_ADDRESS", address)
    service = ModelService()
    assert (await service.status())["reason"] == "not started"
    began = time.monotonic()
    with pytest.raises(ModelServiceDown, match="Ray unreachable: nothing answers at 127.0.0.1"):
        await service.start()
    assert time.monotonic() - began < 10
    status = await service.status()
    assert status["up"] is False and status["address"] == address
    assert status["reason"].startswith("Ray unreachable")
    with pytest.raises(ModelServiceDown):
        async for _ in service.predict(1, 1, [(1, jpeg(1))]):
            pass
    await service.shutdown()


@pytest_asyncio.fixture(scope="module")
async def service() -> AsyncIterator[ModelService]:
    options = ServeOptions(max_batch_size=BATCH, batch_wait_timeout_s=0.05, cpu_threads=1, decode_threads=1)
    service = ModelService(address="local", options=options, object_store_mb=128)
    await service.start()
    # Two projects deploy at once, as two server workers might.
    await asyncio.gather(
        service.deploy(1, 1, model_state("multiclass")), service.deploy(2, 1, model_state("bbox"))
    )
    yield service
    await service.shutdown()
    import ray

    assert not ray.is_initialized()


async def stats(project_id: int) -> dict[str, Any]:
    from ray import serve

    handle = await asyncio.to_thread(serve.get_app_handle, app_name(project_id, 1))
    result: dict[str, Any] = await handle.stats.remote()
    return result


async def test_predictions_stream_back_for_every_item(service: ModelService) -> None:
    items = [(100 + i, jpeg(i)) for i in range(20)] + [(999, b"not an image")]
    got = {item_id: p async for item_id, p in service.predict(1, 1, items)}
    assert set(got) == {item_id for item_id, _ in items}
    assert "cannot decode" in got[999]["error"]
    for item_id, _ in items[:-1]:
        scores = got[item_id]["classes"]
        assert set(scores) == set(CLASSES)
        assert sum(scores.values()) == pytest.approx(1.0, abs=1e-4)
    boxes = [p async for _, p in service.predict(2, 1, items[:3])]
    assert all(isinstance(p["boxes"], list) for p in boxes)
    assert all(set(b) == {"label", "x", "y", "w", "h", "confidence"} for p in boxes for b in p["boxes"])


async def test_the_deployment_streams_one_chunk_per_finished_batch(service: ModelService) -> None:
    from ray import serve

    handle = await asyncio.to_thread(serve.get_app_handle, app_name(1, 1))
    items = [(i, jpeg(i)) for i in range(24)]
    chunks = [chunk async for chunk in handle.options(stream=True).stream.remote(items)]
    assert len(chunks) >= 24 // BATCH
    assert sorted(i for chunk in chunks for i, _ in chunk) == list(range(24))


async def test_concurrent_requests_share_forward_passes(service: ModelService) -> None:
    before = await stats(1)

    async def one(first: int) -> int:
        return len([p async for p in service.predict(1, 1, [(first + i, jpeg(first + i)) for i in range(2)])])

    requests = 6
    counts = await asyncio.gather(*(one(10 * r) for r in range(requests)))
    after = await stats(1)
    assert counts == [2] * requests
    calls = after["forward_calls"] - before["forward_calls"]
    assert after["images"] - before["images"] == 2 * requests
    assert 1 <= calls < requests, after


async def test_embeddings_come_back_normalized(service: ModelService) -> None:
    items = [(i, jpeg(i)) for i in range(10)] + [(77, b"junk")]
    vectors = await service.embed(1, 1, items)
    assert set(vectors) == set(range(10))
    for v in vectors.values():
        assert v.shape == (512,) and v.dtype == np.float32
        assert float(np.linalg.norm(v)) == pytest.approx(1.0, abs=1e-3)


async def test_status_lists_deployments_and_replicas(service: ModelService) -> None:
    status = await service.status()
    assert status["up"] is True and status["reason"] is None
    assert status["started_in_s"] > 0
    deployed = status["deployments"][app_name(1, 1)]
    assert deployed["project_id"] == 1 and deployed["version"] == 1
    assert deployed["status"] == "RUNNING" and deployed["replicas"] == 1


async def test_deploying_again_is_a_no_op(service: ModelService) -> None:
    before = await stats(1)
    await service.deploy(1, 1, model_state("multiclass"))
    # Same replica, same counters: nothing was restarted.
    assert (await stats(1))["forward_calls"] == before["forward_calls"]


async def test_a_state_that_cannot_load_fails_to_deploy_and_is_removed(service: ModelService) -> None:
    with pytest.raises(ModelServiceError, match="ModelStateError"):
        await service.deploy(3, 1, b"not a model")
    assert app_name(3, 1) not in (await service.status())["deployments"]


async def test_training_runs_as_a_ray_task(service: ModelService) -> None:
    samples = [Sample(jpeg(i, 20 if i % 2 else 200), classes=[CLASSES[i % 2]]) for i in range(16)]
    config = TrainConfig(task="multiclass", classes=CLASSES[:2], input_size=SIZE, epochs=1, batch_size=8)
    result = await service.train(config, samples)
    assert isinstance(result, TrainResult)
    assert result.metrics["train_size"] + result.metrics["test_size"] == 16
    assert SavedState.from_bytes(result.state).classes == CLASSES[:2]


async def test_training_errors_come_back_as_raised(service: ModelService) -> None:
    config = TrainConfig(task="multiclass", classes=[], input_size=SIZE, epochs=1)
    with pytest.raises(ValueError, match="class"):
        await service.train(config, [Sample(jpeg(0), classes=[1])])


async def test_a_stopped_deployment_reports_down_and_why(service: ModelService) -> None:
    await service.deploy(4, 1, model_state("multiclass"))
    assert [i async for i, _ in service.predict(4, 1, [(1, jpeg(1))])] == [1]
    await service.stop(4)
    with pytest.raises(ModelServiceDown, match="model v1 of project 4 is not deployed \\(stopped at"):
        async for _ in service.predict(4, 1, [(1, jpeg(1))]):
            pass
    with pytest.raises(ModelServiceDown, match="not deployed"):
        await service.embed(4, 1, [(1, jpeg(1))])
    status = await service.status()
    assert status["up"] is True
    assert app_name(4, 1) not in status["deployments"]
    assert status["stopped"][app_name(4, 1)].startswith("stopped at")
    # The other projects' deployments are untouched.
    assert [i async for i, _ in service.predict(1, 1, [(5, jpeg(5))])] == [5]


def _kill_replicas(name: str) -> int:
    """Kill the Serve replica actors of one application, as a crash would; how many."""
    import ray

    killed = 0
    for actor in ray.util.list_named_actors(all_namespaces=True):  # type: ignore[no-untyped-call]
        if actor["name"].startswith("SERVE_REPLICA::") and name in actor["name"]:
            ray.kill(ray.get_actor(actor["name"], namespace=actor["namespace"]), no_restart=True)
            killed += 1
    return killed


@pytest.mark.reliability(
    area="Faults",
    attack="Killed the model's Serve replica while it streamed predictions for 2,000 images.",
    promise="The stream fails promptly with a clear model-service error instead of hanging, and "
            "predictions resume on their own once Serve has replaced the replica.")
async def test_a_replica_killed_mid_stream_fails_the_stream_and_serving_resumes(
        service: ModelService, measured: Measured) -> None:
    await service.deploy(5, 1, model_state("multiclass"))
    items = [(i, jpeg(i % 50)) for i in range(2000)]
    got: list[int] = []
    killed = 0
    began = time.monotonic()
    with pytest.raises(ModelServiceError) as failure:
        async for item_id, _ in service.predict(5, 1, items):
            got.append(item_id)
            if not killed:
                killed = await asyncio.to_thread(_kill_replicas, app_name(5, 1))
                assert killed >= 1
                killed_at = time.monotonic()
    broke_after = time.monotonic() - killed_at
    assert 0 < len(got) < len(items) and broke_after < 30
    assert "model v1 of project 5" in str(failure.value)
    # Serve replaces the replica; predictions come back without anyone redeploying.
    deadline = time.monotonic() + 120
    while True:
        try:
            again = [i async for i, _ in service.predict(5, 1, items[:16])]
            break
        except ModelServiceError:
            assert time.monotonic() < deadline, "predictions never resumed"
            await asyncio.sleep(1)
    assert sorted(again) == [i for i, _ in items[:16]]
    resumed_after = time.monotonic() - killed_at
    await service.stop(5)
    measured(f"{len(got)} of {len(items)} predictions before the stream failed {broke_after:.1f} s "
             f"after the kill; predictions resumed {resumed_after:.1f} s after it "
             f"(run began {killed_at - began:.1f} s before the kill)")
