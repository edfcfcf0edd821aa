# CPU image of seg-uncertainty serving the default model on port 8000.
# (On a GPU host, torch==2.14.1 from PyPI is a CUDA build: run with --gpus all and SEGU_DEVICE=auto.)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    SEGU_MODEL=default SEGU_DEVICE=auto

WORKDIR /srv
COPY pyproject.toml README.md ./
COPY app ./app
COPY models ./models
COPY templates ./templates
COPY static ./static
RUN pip install torch==2.14.1 torchvision==0.29.1 && pip install -e .

EXPOSE 8000
USER nobody
CMD ["python", "-m", "app", "serve", "--host", "0.0.0.0", "--port", "8000"]
