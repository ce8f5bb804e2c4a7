"""The images' HEALTHCHECK: exit 0 when the server in this container answers GET /healthz with 200, else 1.

Standard library only (the slim base image has no curl). It asks for liveness, not readiness: a replica
without a champion yet is alive (its /readyz says why it is not ready) and must not be restarted for it.
PORT is the entrypoint's; HEALTHCHECK_TIMEOUT_S bounds the request (Docker's own --timeout is longer). A URL
as the only argument checks that instead (compose.yaml's MLflow server: http://127.0.0.1:5000/health).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main(argv: list[str]) -> int:
    url = argv[0] if argv else f"http://127.0.0.1:{os.environ.get('PORT', '8000')}/healthz"
    timeout = float(os.environ.get("HEALTHCHECK_TIMEOUT_S", "4"))
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status = response.status
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"unhealthy: {url} answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
