"""`colabel serve` for the open-loop dispatcher benchmark, counting the statements its pools
send to Postgres. On SIGUSR1 it writes {"statements": n} to $COLABEL_BENCH_COUNTS.

    python bench/dispatch_server.py serve --port N   (the settings come from COLABEL_* variables)
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.pgstats import StatementCounter  # noqa: E402
from server.cli import main  # noqa: E402

counter = StatementCounter()


def _report(signum: int, frame: FrameType | None) -> None:
    target = Path(os.environ["COLABEL_BENCH_COUNTS"])
    part = target.with_suffix(".part")
    part.write_text(json.dumps({"statements": counter.statements,
                                "by_text": dict(counter.by_text.most_common(40))}))
    part.replace(target)


if __name__ == "__main__":
    counter.install()
    signal.signal(signal.SIGUSR1, _report)
    sys.exit(main(sys.argv[1:]))
