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
        local python
        python="$(find_python)"
        # Debian's Python keeps venv's pip bootstrap in a package of its own.
        "$python" -c 'import ensurepip' 2>/dev/null ||
            apt_install "Python's venv module, to create .venv" python3.11-venv
        say "Creating $VENV"
        "$python" -m venv "$VENV"
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
    command -v npm >/dev/null 2>&1 || apt_install "npm, to fetch the page's Markdown libraries" nodejs npm
}

# can_apt: whether this shell can install Debian's packages itself (root, with apt-get).
can_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }

# apt_install WHAT PACKAGE...: install Debian packages as root with apt-get; anywhere else
# (not root, no apt-get) stop, saying which packages to install.
APT_UPDATED=""
apt_install() {
    local what="$1"
    shift
    if ! can_apt; then
        die "missing $what. Install, as root: apt-get install $* (Debian's package names), then run again."
    fi
    say "Installing $* with apt-get ($what)"
    if [ -z "$APT_UPDATED" ]; then
        apt-get update -qq >/dev/null || die "apt-get update failed (above); then: apt-get install $*"
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null ||
        die "apt-get install $* failed (above): install them, then run again."
}

# find_pg_bin: print the folder of PostgreSQL's server programs (initdb, pg_ctl), wherever the
# installed version put them, or fail: PG_BIN if set; else `pg_config --bindir`, the newest
# /usr/lib/postgresql/*/bin or initdb's folder on PATH, the first that holds initdb (Debian's
# pg_config may name a client-only folder). tests/cluster/harness.py: postgres_bin is the same.
find_pg_bin() {
    if [ -n "${PG_BIN:-}" ]; then
        [ -x "$PG_BIN/initdb" ] || return 1
        printf '%s\n' "$PG_BIN"
        return
    fi
    local dir candidates=()
    dir="$(pg_config --bindir 2>/dev/null)" && candidates+=("$dir")
    while IFS= read -r dir; do candidates+=("$dir"); done \
        < <(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV)
    dir="$(command -v initdb 2>/dev/null)" && candidates+=("$(dirname "$(readlink -f "$dir")")")
    for dir in "${candidates[@]}"; do
        if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then
            printf '%s\n' "$dir"
            return
        fi
    done
    return 1
}
