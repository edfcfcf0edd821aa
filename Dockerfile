# syntax=docker/dockerfile:1
# CPU image of seg-uncertainty serving the default model on port 8000.
# (On a GPU host, torch==2.14.1 from PyPI is a CUDA build: run with --gpus all and SEGU_DEVICE=auto.)

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

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SEGU_MODEL=default SEGU_DEVICE=auto

RUN pip install torch==2.14.1 torchvision==0.29.1
# Bind-mounted from the builder (BuildKit) so the wheel itself never becomes a layer of the image.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels pip install /wheels/*.whl

WORKDIR /srv
EXPOSE 8000
USER nobody
CMD ["python", "-m", "app", "serve", "--host", "0.0.0.0", "--port", "8000"]
