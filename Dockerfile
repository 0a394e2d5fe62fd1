# The one application image: intake, workers, beat and migrations (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY api_stub ./api_stub
RUN pip install . \
 && useradd --system --uid 10001 --home-dir /var/lib/sigingest --create-home app

USER app
# No secrets in the image: IP_HASH_SECRET, CSRF_SECRET and UNSUBSCRIBE_SECRET come from the
# environment at run time, and the intake, workers and beat refuse to start without them.
ENV HOST=0.0.0.0 \
    DATA_DIR=/var/lib/sigingest
EXPOSE 8000
CMD ["sigingest", "api", "--host", "0.0.0.0", "--port", "8000"]
