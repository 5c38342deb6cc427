# Shared helpers for the project's scripts (sourced, not run).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

say() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

find_python() {
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return
        fi
    done
    die "Python 3.11 is needed (python3.11 or python3 on PATH)."
}

# ensure_venv [EXTRAS]: create .venv and install the project; re-installs only when
# pyproject.toml (or the extras asked for) changed since the last install.
ensure_venv() {
    local extras="${1:-}"
    if [ ! -x "$PY" ]; then
        say "Creating $VENV"
        "$(find_python)" -m venv "$VENV"
        "$PY" -m pip install --quiet --upgrade pip
    fi
    local spec="."
    [ -n "$extras" ] && spec=".[$extras]"
    local stamp="$VENV/.installed-$(sha1sum "$ROOT/pyproject.toml" | cut -c1-12)-${extras:-base}"
    if [ ! -f "$stamp" ]; then
        say "Installing Python packages ($spec)"
        "$PY" -m pip install --quiet --progress-bar on -e "$ROOT/$spec"
        touch "$stamp"
    fi
}

# ensure_dotenv: a local .env with a generated secret key (never committed).
ensure_dotenv() {
    if [ ! -f "$ROOT/.env" ]; then
        say "Writing .env with a new DJANGO_SECRET_KEY"
        local key
        key="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(50))')"
        printf 'DJANGO_SECRET_KEY=%s\n' "$key" >"$ROOT/.env"
    fi
    mkdir -p "$ROOT/var"
}

# ensure_node: npm is needed once, to bring the page's Markdown libraries into static files.
ensure_node() {
    command -v npm >/dev/null 2>&1 && return
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "Installing Node.js and npm with apt-get (for the page's browser libraries)"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
    else
        die "npm is needed once to fetch the page's libraries: install Node.js with npm, then run again."
    fi
}
