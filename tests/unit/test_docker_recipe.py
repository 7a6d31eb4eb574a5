"""docker/ is the production recipe of what tests/cluster/ runs: its nginx.conf is the
template rendered for the compose replicas, and compose.yaml names those replicas and a Ray
cluster the replicas connect to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.cluster.stack import renderer
from tests.infra import ROOT

DOCKER = ROOT / "docker"


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    return data


def test_nginx_conf_is_the_template_rendered_for_the_compose_replicas() -> None:
    assert (DOCKER / "nginx.conf").read_text() == renderer().render(), (
        "docker/nginx.conf differs from its template: python docker/nginx_conf.py > docker/nginx.conf")


def test_compose_runs_the_replicas_nginx_sends_to() -> None:
    services = compose()["services"]
    replicas = sorted(name for name in services if name.startswith("colabel-"))
    assert [f"{name}:8000" for name in replicas] == list(renderer().COMPOSE_SERVERS)
    assert set(services["nginx"]["depends_on"]) == set(replicas)
    mounted = services["nginx"]["volumes"][0].split(":")
    assert Path(DOCKER / mounted[0]).resolve() == DOCKER / "nginx.conf"
    assert mounted[1] == "/etc/nginx/nginx.conf"


def test_the_replicas_connect_to_the_ray_cluster_of_the_recipe() -> None:
    services = compose()["services"]
    head = services["ray-head"]["command"]
    port = next(a.split("=", 1)[1] for a in head if a.startswith("--port="))
    assert "--head" in head
    assert f"--address=ray-head:{port}" in services["ray-worker"]["command"]
    for name in (n for n in services if n.startswith("colabel-")):
        assert services[name]["environment"]["RAY_ADDRESS"] == f"ray-head:{port}"
        assert "ray-head" in services[name]["depends_on"]
    # One token for every Ray node and every replica (tests/cluster/ray_cluster.py runs so).
    for name in (n for n in services if n.startswith(("colabel-", "worker-", "ray-"))):
        env = services[name]["environment"]
        assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN"].startswith("${RAY_AUTH_TOKEN")


def test_the_replicas_leave_background_work_to_the_worker_services() -> None:
    services = compose()["services"]
    workers = [n for n in services if n.startswith("worker-")]
    assert len(workers) >= 1
    for name in workers:
        assert services[name]["command"] == ["colabel", "worker"]
        # Same engines, files and Ray cluster as the replicas they work for.
        assert services[name]["environment"] == services["colabel-1"]["environment"]
        assert services[name]["volumes"] == services["colabel-1"]["volumes"]
    for name in (n for n in services if n.startswith("colabel-")):
        assert services[name]["environment"]["COLABEL_JOB_WORKERS"] == "0"
