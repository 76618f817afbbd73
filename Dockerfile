# linkcast: one image for every service of docker-compose.yml (api, engine, ui, feeder).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The CPU build of torch first: the pinned version from PyPI would pull CUDA (GBs).
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

COPY pyproject.toml README.md ./
COPY linkcast ./linkcast
COPY api ./api
COPY db ./db
COPY engine ./engine
COPY forecaster ./forecaster
COPY network ./network
COPY simulator ./simulator
COPY ui ./ui
RUN pip install . \
    && useradd --create-home --uid 10001 linkcast \
    && mkdir -p /run/linkcast && chown linkcast /run/linkcast

USER linkcast
ENV LINKCAST_DATA_DIR=/home/linkcast/.linkcast
EXPOSE 8000 8501
CMD ["linkcast", "--help"]
