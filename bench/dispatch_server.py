"""`colabel serve` for the open-loop dispatcher benchmark, counting the statements its pools
send to Postgres. On SIGUSR1 a server process writes {"statements": n, "by_text": {...}} to
$COLABEL_BENCH_COUNTS.<its pid>.

    python bench/dispatch_server.py serve --port N   (the settings come from COLABEL_* variables)

With `--workers N` the worker processes are spawned: each imports this file again (as
`__mp_main__`), so the counter and its signal handler are set up at import, in every process.
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
    target = Path(f"{os.environ['COLABEL_BENCH_COUNTS']}.{os.getpid()}")
    part = target.with_suffix(".part")
    part.write_text(json.dumps({"statements": counter.statements,
                                "by_text": dict(counter.by_text.most_common(40))}))
    part.replace(target)


counter.install()
signal.signal(signal.SIGUSR1, _report)

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
