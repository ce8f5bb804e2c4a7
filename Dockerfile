# The DeskPilot serving image: `deskpilot serve` (the triage API and the console) by default, and every other
# `deskpilot` command for one-shot jobs (`migrate`, `monitor`, `keys create`, ...), plus `mlflow server`,
# which the serving install already carries, and the PostgreSQL client for `deskpilot store backup|restore`.
# No torch, no compilers: the serving install is `pip install .` without extras (the training image is
# deploy/docker/Dockerfile.train).
#
#   docker build -t deskpilot-serve:0.1.0 .
#   docker run --rm -p 8000:8000 -v deskpilot-home:/var/lib/deskpilot deskpilot-serve:0.1.0
#
# Base images are pinned by exact tag; for byte-for-byte rebuilds pin them by digest too (FROM image:tag@sha256:...).
# Python packages are pinned by deploy/docker/constraints.txt (the whole closure, as tested).

# 1. The console's front-end library (htmx), from npm at the version console-assets/package-lock.json pins:
#    what `make console-assets` does, without the browser suite's devDependencies.
FROM node:22.12.0-bookworm-slim AS console-assets
WORKDIR /build/console-assets
COPY console-assets/package.json console-assets/package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error

# 2. The wheel, with the vendored assets inside it, installed into a virtual environment that has no pip.
FROM python:3.11.7-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m pip install --no-cache-dir pip==26.3 setuptools==84.2.1 wheel==0.48.0
WORKDIR /build
COPY pyproject.toml README.md LICENSE ./
COPY src/ ./src/
COPY console-assets/vendor.py console-assets/package-lock.json ./console-assets/
COPY --from=console-assets /build/console-assets/node_modules/ ./console-assets/node_modules/
COPY deploy/docker/constraints.txt /build/constraints.txt
RUN python console-assets/vendor.py \
    && test -s src/deskpilot/console/static/vendor/htmx/htmx.min.js \
    && python -m pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /build/wheels . \
    && python -m venv --without-pip /opt/deskpilot \
    && python -m pip --python /opt/deskpilot/bin/python install --no-cache-dir \
        --constraint /build/constraints.txt /build/wheels/deskpilot-*.whl \
    && /opt/deskpilot/bin/python -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)"

# 3. The runtime: the base image, an unprivileged user, the virtual environment and the entrypoint.
FROM python:3.11.7-slim-bookworm AS runtime
LABEL org.opencontainers.image.title="deskpilot" \
      org.opencontainers.image.description="DeskPilot support-ticket triage: API, console and CLI (serving install)" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
# The PostgreSQL 15 client (pg_dump, pg_restore), for `deskpilot store backup` and `store restore` on
# PostgreSQL: the same major as the server in compose.yaml (a dump needs a client at least as new as the
# server), from the base image's own Debian repositories, pinned to bookworm's current build. Debian keeps
# only the newest build of a suite, so a security update makes this pin unbuildable: bump it to what
# `apt-cache policy postgresql-client-15` offers then. No recommends: no compilers, no server.
# The base image's own pip and setuptools go (the virtual environment has none either): no installer at run
# time. /var/lib/deskpilot is DESKPILOT_HOME (0700, like the home `deskpilot` creates); /var/lib/mlflow is the
# artifact folder when this image runs `mlflow server`; /var/backups/deskpilot is where the backup job
# writes. A fresh named volume mounted on any of them takes over this ownership and mode.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends postgresql-client-15=15.18-0+deb12u1 \
    && rm -rf /var/lib/apt/lists/* \
    && python -m pip uninstall --yes --quiet pip setuptools wheel \
    && groupadd --system --gid 10001 deskpilot \
    && useradd --system --uid 10001 --gid deskpilot --home-dir /var/lib/deskpilot --no-create-home \
        --shell /usr/sbin/nologin deskpilot \
    && install -d -o deskpilot -g deskpilot -m 0700 /var/lib/deskpilot \
    && install -d -o deskpilot -g deskpilot -m 0750 /var/lib/mlflow \
    && install -d -o deskpilot -g deskpilot -m 0700 /var/backups/deskpilot
COPY --from=build /opt/deskpilot/ /opt/deskpilot/
COPY --chmod=0755 deploy/docker/entrypoint.sh /usr/local/bin/deskpilot-entrypoint
COPY --chmod=0644 deploy/docker/healthcheck.py /usr/local/lib/deskpilot/healthcheck.py
ENV PATH="/opt/deskpilot/bin:${PATH}" \
    VIRTUAL_ENV=/opt/deskpilot \
    DESKPILOT_HOME=/var/lib/deskpilot \
    HOME=/var/lib/deskpilot \
    MPLCONFIGDIR=/tmp/matplotlib \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PORT=8000
USER 10001:10001
WORKDIR /var/lib/deskpilot
EXPOSE 8000
# Liveness only (/healthz): a replica without a champion yet is alive; its /readyz says what it still lacks.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/usr/local/lib/deskpilot/healthcheck.py"]
ENTRYPOINT ["/usr/local/bin/deskpilot-entrypoint"]
CMD ["serve"]
