# Production image: gunicorn serving gridpatrol. Migrations run as a one-off
# (`docker compose run --rm migrate`, or `gridpatrol db upgrade`) before the app starts.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    GRIDPATROL_ENV=production

WORKDIR /app
# Dependencies first, so code changes do not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir -p backend geo mobile_api migrations \
    && touch backend/__init__.py geo/__init__.py mobile_api/__init__.py migrations/__init__.py \
    && pip install . && pip uninstall -y gridpatrol
COPY backend backend
COPY geo geo
COPY mobile_api mobile_api
COPY migrations migrations
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin gridpatrol

USER gridpatrol
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"
# JSON access lines come from the app itself; gunicorn's own access log stays off.
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--workers", "4", "--timeout", "120", \
     "--limit-request-line", "8190", "--limit-request-field_size", "16380", \
     "--forwarded-allow-ips", "*", "backend.wsgi:app"]
