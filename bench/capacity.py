"""The capacity model of docs/SCALING.md, computed from a bench/cluster.py run.

    .venv/bin/python bench/cluster.py > cluster.json
    .venv/bin/python bench/capacity.py cluster.json [--nodes 3] [--labelers 1000,10000]

For each workforce size and kind of work it multiplies the measured cost of one operation
(at the chosen node count: the 3-node figures include what crossing nodes costs) by the
operations that workforce asks for, and prints one JSON line:

  classification          a page of 4 images per labeler every 5 s (0.8 items/s each)
  classification_ml       the same with a model's suggestion written into every document
  boxes                   one item per labeler every 30 s, leased and submitted alone, and
                          2 live updates/s per labeler while drawing

Per scenario: operations per second, then server cores, Postgres cores, commits/s, WAL
MB/s, Redis commands/s and cores, at 100% of a core (plan for 50-60%: headroom for peaks).
Box items are leased one at a time; the cost of a page of 4 is taken for each (an upper
bound: most of a page's cost is per request).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

CLASSIFY_ITEMS_PER_S = 4 / 5      # a page of 4 every 5 s
BOX_ITEMS_PER_S = 1 / 30
BOX_UPDATES_PER_S = 2.0


def needs(ops_per_s: float, cost: dict[str, float]) -> dict[str, float]:
    """What `ops_per_s` operations of `cost` each ask of the machines."""
    return {"server_cores": ops_per_s * cost["nodes_cpu_us"] / 1e6,
            "postgres_cores": ops_per_s * cost["postgres_cpu_us"] / 1e6,
            "pg_commits_per_s": ops_per_s * cost["pg_commits"],
            "pg_wal_mb_per_s": ops_per_s * cost["pg_wal_bytes"] / 1e6,
            "redis_commands_per_s": ops_per_s * cost["redis_commands"],
            "redis_cores": ops_per_s * cost["redis_cpu_us"] / 1e6}


def add(*parts: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for p in parts:
        for k, v in p.items():
            out[k] = out.get(k, 0.0) + v
    return {k: round(v, 2) for k, v in out.items()}


def model(run: dict[str, Any], nodes: int, workforce: list[int]) -> dict[str, Any]:
    config = next(c for c in run["configurations"] if c["nodes"] == nodes)
    item = config["dispatch"]["per_item"]
    ml_item = config["prelabel"]["per_item"]
    page = {k: v * run["page"] for k, v in item.items()}  # one box item: a whole page's cost
    update = config["collab"]["per_update_written"]
    out: dict[str, Any] = {"bench": "capacity", "from_nodes": nodes, "scenarios": {}}
    for n in workforce:
        items = n * CLASSIFY_ITEMS_PER_S
        boxes, updates = n * BOX_ITEMS_PER_S, n * BOX_UPDATES_PER_S
        out["scenarios"][str(n)] = {
            "classification": {"items_per_s": items, **add(needs(items, item))},
            "classification_ml": {"items_per_s": items, "prelabels_per_s": items,
                                  **add(needs(items, ml_item))},
            "boxes": {"items_per_s": round(boxes, 1), "updates_per_s": updates,
                      **add(needs(boxes, page), needs(updates, update))},
        }
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("cluster_json", help="a bench/cluster.py output line ('-': stdin)")
    parser.add_argument("--nodes", type=int, default=3, help="whose per-operation costs to use")
    parser.add_argument("--labelers", default="1000,10000")
    args = parser.parse_args()
    text = sys.stdin.read() if args.cluster_json == "-" else open(args.cluster_json).read()
    run = json.loads(text.strip().splitlines()[-1])
    print(json.dumps(model(run, args.nodes, [int(x) for x in args.labelers.split(",")])))
