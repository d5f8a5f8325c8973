# One image for every backlane process: migrate, worker, clock, dashboard and simulator (see compose.yaml).
# No secrets here: credentials and URLs come from the environment at run time.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --system --create-home --uid 10001 --user-group backlane

WORKDIR /app
# The whole source tree, migrations/ included (.dockerignore leaves out caches and local databases).
COPY . /app
# Editable on purpose: backlane/db/migrate.py finds migrations/ next to the package (/app/migrations),
# which a plain `pip install .` into site-packages would leave behind.
RUN pip install -e ".[postgres,dashboard]" \
    && test -d /app/migrations/versions \
    && mkdir -p /data/storage /data/exports \
    && chown -R backlane:backlane /data

USER backlane

# Compose gives every service its own command; this default is a worker.
CMD ["dramatiq", "actors", "scheduler", "--processes", "2", "--threads", "8"]
