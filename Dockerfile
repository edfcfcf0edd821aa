# syntax=docker/dockerfile:1
# seg-uncertainty serving the default model on port 8000, as a non-root user, with a health check on /readyz.
#
#   docker build -t seg-uncertainty .                                   # CPU (torch from download.pytorch.org/whl/cpu)
#   docker build --build-arg VARIANT=cuda -t seg-uncertainty:cuda .     # CUDA (PyPI's torch: CUDA libraries as wheels)
#   docker run -p 8000:8000 seg-uncertainty
#   docker run --gpus all -p 8000:8000 -e SEGU_DEVICE=auto seg-uncertainty:cuda
#
# TORCH_INDEX_URL overrides the index either variant picks (e.g. https://download.pytorch.org/whl/cu126).
# tests/test_docker.py checks this file against the app: command line, port, health check, user, pins, wheel install.

# Builder: only the wheel. It carries templates/, static/ and models/default/ inside the app package (see pyproject.toml).
FROM python:3.11-slim AS builder

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
COPY templates ./templates
COPY static ./static
COPY models ./models
RUN pip wheel --no-deps -w /wheels .

# Runtime: torch first (its own layer, cached across app changes), then the wheel, installed non-editable.
# No source tree is copied: templates, static files and the default model are read from site-packages/app/.
FROM python:3.11-slim

ARG VARIANT=cpu
ARG TORCH_INDEX_URL=

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SEGU_MODEL=default SEGU_DEVICE=auto

RUN case "$VARIANT" in \
      cpu) index="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}" ;; \
      cuda) index="${TORCH_INDEX_URL:-https://pypi.org/simple}" ;; \
      *) echo "VARIANT must be cpu or cuda, got '$VARIANT'" >&2; exit 1 ;; \
    esac \
 && pip install --index-url "$index" torch==2.14.1 torchvision==0.29.1
# Bind-mounted from the builder (BuildKit) so the wheel itself never becomes a layer of the image.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels pip install /wheels/*.whl

RUN groupadd --system --gid 10001 segu \
 && useradd --system --uid 10001 --gid segu --create-home --home-dir /home/segu --shell /usr/sbin/nologin segu

WORKDIR /home/segu
EXPOSE 8000
USER 10001:10001
# Ready = model loaded and one warm-up analysis done (about 4 s on CPU); slim images have no curl, so Python asks.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
CMD ["python", "-m", "app", "serve", "--host", "0.0.0.0", "--port", "8000"]
