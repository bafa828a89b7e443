# syntax=docker/dockerfile:1.7
# One image per Belltower service, chosen by build argument:
#   docker build --build-arg SERVICE=scheduler -t belltower/scheduler .
# SERVICE is one of: scheduler, notifier-worker, integration-worker, history, console.
# The image runs as uid 10001 with only a virtualenv (no sources, no uv) and writes nothing
# outside /tmp, so it runs with a read-only root filesystem.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.9

FROM ${UV_IMAGE} AS uv

FROM ${PYTHON_IMAGE} AS build
ARG SERVICE
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Third-party dependencies first: this layer is reused until uv.lock changes.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,target=/src,rw \
    test -n "${SERVICE}" || { echo "set --build-arg SERVICE=<scheduler|notifier-worker|integration-worker|history|console>" >&2; exit 1; } && \
    uv sync --frozen --no-dev --no-install-workspace --package "belltower-${SERVICE}"
COPY . /src
# Then the workspace packages themselves, installed (not linked) so the sources stay behind.
# --no-dev also leaves out belltower-dev (dev/: local servers, demo school, make dev).
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package "belltower-${SERVICE}" && \
    test -x "/app/.venv/bin/belltower-${SERVICE}" && \
    ln -s "/app/.venv/bin/belltower-${SERVICE}" /app/service

FROM ${PYTHON_IMAGE} AS runtime
ARG SERVICE
LABEL org.opencontainers.image.title="belltower-${SERVICE}" \
      org.opencontainers.image.source="https://github.com/belltower/belltower" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 belltower && \
    useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp \
        --shell /usr/sbin/nologin belltower
COPY --from=build /app /app
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    BELLTOWER_LOG_JSON=true \
    BELLTOWER_HEALTH_HOST=0.0.0.0
WORKDIR /tmp
USER 10001:10001
ENTRYPOINT ["/app/service"]
