# The chat server image: daphne serving config.asgi:application on port 8000.
# docker-compose.yml runs several of these behind nginx (deploy/nginx.conf); docs/scaling.md.

# --- the room page's browser libraries (scripts/build-frontend, without a host Node.js) ---------
FROM node:20-slim AS frontend
WORKDIR /app
COPY frontend/package.json frontend/package-lock.json frontend/
COPY scripts/build-frontend scripts/
RUN mkdir -p frontend/static && scripts/build-frontend

# --- the Python application ---------------------------------------------------------------------
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_READ_DOT_ENV=0 \
    DJANGO_STATIC_ROOT=/app/staticfiles \
    WHITENOISE_USE_FINDERS=0
WORKDIR /app
RUN useradd --create-home --uid 1000 chat
COPY pyproject.toml README.md ./
COPY chat chat
COPY config config
COPY llmsim llmsim
RUN pip install .
COPY manage.py ./
COPY knowledge knowledge
COPY frontend/templates frontend/templates
COPY frontend/static frontend/static
COPY --from=frontend /app/frontend/static/vendor frontend/static/vendor
# collectstatic needs a secret key to import the settings; this one is used for nothing else.
RUN DJANGO_SECRET_KEY=collectstatic-only python manage.py collectstatic --no-input -v 0
USER chat
EXPOSE 8000
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "config.asgi:application"]
