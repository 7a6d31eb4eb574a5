"""Render docker/nginx.conf.template: the production configuration (docker/nginx.conf, for
the replicas of compose.yaml) or one for nodes on local ports (the cluster tests).

    python docker/nginx_conf.py > docker/nginx.conf

Stand-alone on purpose (no Colabel import): an operator can render a configuration for
their own upstreams with `render(servers=[...])`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

TEMPLATE = Path(__file__).with_name("nginx.conf.template")
# The replicas of compose.yaml, by service name.
COMPOSE_SERVERS = ("colabel-1:8000", "colabel-2:8000", "colabel-3:8000")
# How long a node that failed a connection is left out before it is tried again.
FAIL_TIMEOUT_S = 3


def render(servers: Sequence[str] = COMPOSE_SERVERS, *, listen: str = "80",
           mime_types: str = "/etc/nginx/mime.types", access_log: str = "/dev/stdout",
           error_log: str = "/dev/stderr", state_dir: str | None = None,
           run_as_root: bool = False, http_extra: str = "") -> str:
    """The configuration for `servers` (host:port). `state_dir`: where an nginx run outside
    its package's layout keeps its pid file and temporary files (None: the package's own);
    `http_extra`: more directives for the http block (a log format, say)."""
    text = TEMPLATE.read_text(encoding="utf-8")
    main = ""
    paths = ""
    if state_dir is not None:
        main = f"pid {state_dir}/nginx.pid;\nerror_log {state_dir}/error.log warn;\n"
        paths = "".join(f"    {kind}_temp_path {state_dir}/{kind};\n"
                        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    if run_as_root:
        # Started by root without a `user`, workers run as nobody and cannot write state_dir.
        main = "user root;\n" + main
    lines = "\n".join(f"        server {s} max_fails=1 fail_timeout={FAIL_TIMEOUT_S}s;"
                      for s in servers)
    extra = "".join(f"    {line}\n" for line in http_extra.splitlines())
    values = {"main": main, "mime_types": mime_types, "access_log": access_log,
              "error_log": error_log, "http_extra": paths + extra, "servers": lines,
              "listen": listen}
    for name, value in values.items():
        text = text.replace("{{" + name + "}}", value)
    if "{{" in text:
        raise ValueError(f"unfilled placeholder in {TEMPLATE}: {text[text.index('{{'):][:40]}")
    return text


if __name__ == "__main__":
    sys.stdout.write(render())
