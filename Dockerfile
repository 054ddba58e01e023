# The app (Streamlit pages + the embedder) in one image. See docs/deploy.md.
#
#   docker compose up --build                       # app + Qdrant, http://127.0.0.1:8501
#   docker build -t embedder:local .                # the image alone
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu -t embedder:cpu .
#                                                   # CPU-only torch: a far smaller image, no GPU
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    HF_HOME=/models

# torch first, pinned and on its own layer (as in the Makefile), so no other package can pull a
# different multi-GB build and the layer survives changes to requirements.txt. PyPI's build runs on
# the CPU and on NVIDIA GPUs (docker-compose.gpu.yml); TORCH_INDEX_URL picks another wheel index.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=
# hadolint ignore=DL3013
RUN pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch==${TORCH_VERSION}"

# Then the rest: only requirements.txt is copied, so editing code never reinstalls dependencies.
WORKDIR /app
COPY requirements.txt ./
RUN pip install -r requirements.txt

# A user of its own. Only the data folder (uploads) and the model cache are writable; named volumes
# mounted there start out owned by this user. APP_UID can match a host user for bind mounts.
ARG APP_UID=1000
RUN useradd --create-home --uid "${APP_UID}" --user-group app \
    && mkdir -p /app/data /models /images \
    && chown app:app /app/data /models

# The code last (.dockerignore lets in only what the app runs: no tests, data, .env or .git).
COPY . .

USER ${APP_UID}
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4).status != 200)"]

# Inside a container the server must listen on every interface; compose publishes the port on the
# host's 127.0.0.1 only, so the app stays local.
CMD ["streamlit", "run", "main_app.py", "--server.address", "0.0.0.0", "--server.port", "8501"]
