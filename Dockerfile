# CodeCarbon Playground: web server and one worker in one image (bin/serve).
# Scale out by running more containers with WORKERS_ONLY=1 against one PostgreSQL.
# BASE is the official image; `make image-test` builds with a local stand-in where no
# registry is reachable (deploy/image/base), and nothing else changes.
ARG BASE=python:3.12-slim-bookworm
FROM ${BASE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DATA_DIR=/data \
    BIND=0.0.0.0:8000 \
    SNIPPET_ENVS_DIR=/opt/codecarbon-playground/envs

# Debian's python3 and pypy3 are two of the environments snippets run in (the image's
# own CPython is the third): environments.toml.
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap libseccomp2 nginx-light \
       python3 python3-venv pypy3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home --home-dir /home/app app \
    && useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin ccp-sandbox \
    && mkdir -p /data && chown app:app /data && chmod 700 /data

WORKDIR /app
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock

COPY . .
# The environments, readable by every user; then the static files. Anything these
# commands write to a data directory goes to a scratch one: a root-owned file left in
# /data would stop the image's default SQLite database from opening.
RUN export SECRET_KEY=build-only PIP_NO_CACHE_DIR=1 DATA_DIR="$(mktemp -d)" \
    && python manage.py snippetenv \
    && python manage.py collectstatic --noinput -v0 \
    && rm -rf "$DATA_DIR"

# Not root: snippets then run as `app` too, confined by seccomp, Landlock and resource
# limits, or by bubblewrap where the container may create user namespaces (docs/deploying.md).
USER app
EXPOSE 8000
VOLUME ["/data"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
    CMD python -c "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz').status != 200)"
CMD ["bin/serve"]
