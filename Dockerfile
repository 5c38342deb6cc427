# The chat server image: daphne serving config.asgi:application on port 8000.
# docker-compose.yml runs several of these behind nginx (deploy/nginx.conf); docs/scaling.md.
#
# Python 3.11: the release on which CI runs the whole suite (scripts/test; 3.12 and 3.13 are
# supported too, and CI runs the install and the fast tests on 3.13), so the image runs what is
# tested most. Another supported one: docker build --build-arg PYTHON_VERSION=3.13 .
# No Node.js stage: the page's libraries are committed in frontend/static/vendor/.
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim
# PYTHONMALLOC=malloc: small objects from glibc's malloc, which gives freed pages back once a
# crowd has gone (chat.reclaim; docs/benchmarks.md, "Memory after a crowd leaves").
ENV PYTHONUNBUFFERED=1 \
    PYTHONMALLOC=malloc \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_PROJECT_ENVIRONMENT=/opt/roomchat \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_NO_CACHE=1 \
    PATH=/opt/roomchat/bin:$PATH \
    DJANGO_READ_DOT_ENV=0 \
    DJANGO_STATIC_ROOT=/app/staticfiles \
    WHITENOISE_USE_FINDERS=0
WORKDIR /app
RUN useradd --create-home --uid 1000 chat
COPY pyproject.toml uv.lock README.md ./
COPY scripts/locked-uv scripts/
COPY chat chat
COPY config config
COPY llmsim llmsim
# The same packages as ./scripts/serve installs, from uv.lock, with the uv it pins; without the
# dev group (uv itself) and not editable. pip then takes uv away again.
RUN pip install "$(python scripts/locked-uv)" && \
    uv sync --locked --no-dev --no-editable && \
    pip uninstall --yes uv
COPY manage.py ./
COPY knowledge knowledge
COPY frontend/templates frontend/templates
COPY frontend/static frontend/static
# collectstatic needs a secret key to import the settings; this one is used for nothing else.
RUN DJANGO_SECRET_KEY=collectstatic-only python manage.py collectstatic --no-input -v 0
USER chat
EXPOSE 8000
CMD ["daphne", "--websocket_connect_timeout", "30", "-b", "0.0.0.0", "-p", "8000", "config.asgi:application"]
