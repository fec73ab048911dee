# syntax=docker/dockerfile:1
# Reserve: build wheels in one stage, run as a non-root user from a slim image in the next.

FROM python:3.11-slim AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md ./
COPY service ./service
COPY fake_riva ./fake_riva
RUN python -m venv /opt/reserve \
 && /opt/reserve/bin/pip install --upgrade pip \
 && /opt/reserve/bin/pip install .

FROM python:3.11-slim AS runtime
# a numeric uid/gid, so Kubernetes' runAsNonRoot can verify it without /etc/passwd
RUN groupadd --system --gid 10001 reserve \
 && useradd --system --uid 10001 --gid reserve --home-dir /app --shell /usr/sbin/nologin reserve
WORKDIR /app
COPY --from=build /opt/reserve /opt/reserve
COPY hypercorn.toml ./
COPY web ./web
ENV PATH=/opt/reserve/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    RESERVE_LOG_LEVEL=INFO \
    RESERVE_LOG_FORMAT=json \
    RESERVE_WEB_DIR=/app/web
USER 10001:10001
EXPOSE 8000
# SIGTERM drains every worker: live sessions get RESERVE_SHUTDOWN_GRACE_S (20 s), then their finals
# are flushed (up to RESERVE_FINISH_TIMEOUT_S), then hypercorn stops. Give it time: docker stop
# --time 60, compose stop_grace_period, Kubernetes terminationGracePeriodSeconds (see deploy/).
# RESERVE_WORKERS=N (with RESERVE_REDIS_URL) runs N workers on the one port.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
CMD ["python", "-m", "service", "serve"]
