# Shared helpers for the project's scripts (sourced, not run).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

say() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# The Python releases Roomchat supports, in the order the scripts prefer them: 3.11 first, the one
# on which CI runs the whole suite (scripts/test also runs the install and the fast tests on the
# newest). pyproject.toml's requires-python says the same (tests/test_install.py checks).
SUPPORTED_PYTHONS=(3.11 3.12 3.13)
NEWEST_PYTHON="${SUPPORTED_PYTHONS[-1]}"

# python_version PYTHON: print its "3.X", or fail if it does not run.
python_version() {
    "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null
}

# is_supported 3.X: whether Roomchat supports that release.
is_supported() {
    local v
    for v in "${SUPPORTED_PYTHONS[@]}"; do [ "$1" = "$v" ] && return 0; done
    return 1
}

# find_python [3.X]: print the path of a supported Python (of release 3.X if given), or stop
# with a message saying what was found and what to do. ROOMCHAT_PYTHON (a command or a path)
# chooses one; otherwise the first of python3.11, python3.12, python3.13 and python3 on PATH
# that runs and is supported, then pyenv's own versions (`pyenv root`, else PYENV_ROOT or
# ~/.pyenv: its shims on PATH run only the versions pyenv was told to use).
find_python() {
    local want="${1:-}" candidate version found=""
    [ -z "$want" ] || is_supported "$want" || return 1
    local supported="${SUPPORTED_PYTHONS[*]}"
    supported="${supported// /, }"
    if [ -n "${ROOMCHAT_PYTHON:-}" ]; then
        candidate="$(command -v "$ROOMCHAT_PYTHON" 2>/dev/null)" ||
            die "ROOMCHAT_PYTHON=$ROOMCHAT_PYTHON: no such program. Point it at Python $supported, or unset it."
        version="$(python_version "$candidate")" ||
            die "ROOMCHAT_PYTHON=$ROOMCHAT_PYTHON does not run as Python. Point it at Python $supported, or unset it."
        is_supported "$version" ||
            die "ROOMCHAT_PYTHON=$ROOMCHAT_PYTHON is Python $version; Roomchat supports Python $supported."
        if [ -z "$want" ] || [ "$version" = "$want" ]; then
            printf '%s\n' "$candidate"
            return
        fi
    fi
    local names=()
    if [ -n "$want" ]; then
        names=("python$want")
    else
        for version in "${SUPPORTED_PYTHONS[@]}"; do names+=("python$version"); done
        names+=(python3)
    fi
    for candidate in "${names[@]}"; do
        candidate="$(command -v "$candidate" 2>/dev/null)" || continue
        version="$(python_version "$candidate")" || continue
        if is_supported "$version" && { [ -z "$want" ] || [ "$version" = "$want" ]; }; then
            printf '%s\n' "$candidate"
            return
        fi
        found+="${found:+, }$candidate is Python $version"
    done
    local root
    root="$(pyenv root 2>/dev/null)" || root="${PYENV_ROOT:-$HOME/.pyenv}"
    if [ -d "$root/versions" ]; then
        local versions=("${SUPPORTED_PYTHONS[@]}")
        [ -z "$want" ] || versions=("$want")
        for version in "${versions[@]}"; do
            candidate="$(ls -d "$root"/versions/"$version".*/bin/python"$version" 2>/dev/null |
                sort -V | tail -n 1)" || true
            if [ -n "$candidate" ] && [ "$(python_version "$candidate")" = "$version" ]; then
                printf '%s\n' "$candidate"
                return
            fi
        done
    fi
    [ -z "$want" ] || return 1
    die "no supported Python found: Roomchat runs on Python $supported (looked for python3.11, python3.12, python3.13 and python3 on PATH and in pyenv; found ${found:-none}). Install one (Debian, Ubuntu: apt-get install python3 python3-venv; macOS: brew install python@3.13), or set ROOMCHAT_PYTHON to one."
}

# ensure_venv [EXTRAS [VENV [3.X]]]: make VENV (.venv) with a supported Python (release 3.X if
# given) and install the project into it from uv.lock, with uv, itself locked there. Re-installs
# only when uv.lock, pyproject.toml or the extras asked for changed since the last install. A
# venv whose Python is no longer supported, or not the one ROOMCHAT_PYTHON or 3.X asks for, is
# made again. A missing, malformed or out-of-date uv.lock stops with what to do.
ensure_venv() {
    local extras="${1:-}" venv="${2:-$VENV}" want="${3:-}"
    local py="$venv/bin/python" have python
    if [ -x "$py" ]; then
        have="$(python_version "$py")" || have=""
        if [ -n "${ROOMCHAT_PYTHON:-}" ] && [ -z "$want" ]; then
            want="$(python_version "$(find_python)")"
        fi
        if ! is_supported "$have" || { [ -n "$want" ] && [ "$have" != "$want" ]; }; then
            say "Making ${venv#"$ROOT/"} again: it has Python ${have:-(broken)}, wanted ${want:-a supported one}"
            rm -rf "$venv"
        fi
    fi
    if [ ! -x "$py" ]; then
        if [ -n "$want" ]; then
            python="$(find_python "$want")" || die "Python $want was not found (python$want on PATH, or in pyenv)."
        else
            python="$(find_python)"
        fi
        local version
        version="$(python_version "$python")"
        # Debian's Python keeps venv's pip bootstrap in a package of its own.
        "$python" -c 'import ensurepip' 2>/dev/null ||
            apt_install "Python's venv module, to create ${venv#"$ROOT/"}" "python$version-venv"
        local uv_requirement
        uv_requirement="$("$python" "$ROOT/scripts/locked-uv")" || die "cannot install: see the line above."
        say "Creating ${venv#"$ROOT/"} with Python $version ($python)"
        "$python" -m venv "$venv"
        say "Installing $uv_requirement, which installs the rest from uv.lock"
        "$py" -m pip install --quiet --disable-pip-version-check "$uv_requirement" ||
            { rm -rf "$venv"; die "pip could not install $uv_requirement (above)."; }
    fi
    local stamp
    stamp="$venv/.installed-$(cat "$ROOT/uv.lock" "$ROOT/pyproject.toml" | sha1sum | cut -c1-12)-${extras:-base}"
    if [ ! -f "$stamp" ]; then
        "$py" "$ROOT/scripts/locked-uv" >/dev/null || die "cannot install: see the line above."
        # --inexact: what the lock lists is installed at its pinned release, and nothing else is
        # removed: pip, the test tools when ./scripts/serve runs, what a developer added by hand.
        # A new venv (a fresh clone, CI) holds exactly the lock all the same.
        local uv="$venv/bin/uv" sync=(sync --locked --inexact)
        if [ ! -x "$uv" ]; then
            # A venv made before uv.lock (pip installed into it): bring in the locked uv.
            "$py" -m pip install --quiet --disable-pip-version-check "$("$py" "$ROOT/scripts/locked-uv")" ||
                die "${venv#"$ROOT/"} has no uv and pip could not install it: remove ${venv#"$ROOT/"} and run again."
        fi
        [ -z "$extras" ] || sync+=(--extra "$extras")
        export UV_PROJECT_ENVIRONMENT="$venv" UV_PYTHON_DOWNLOADS=never
        # uv is told no Python but the venv's; pip's settings (/etc/pip.conf, caps) are not uv's.
        if ! "$uv" lock --check --quiet --python "$py" --project "$ROOT"; then
            die "uv.lock is out of date with pyproject.toml, or damaged (uv says which, above). If you changed the dependencies, run '${venv#"$ROOT/"}/bin/uv lock' and commit uv.lock (docs/development.md, \"The lock file\"); if not, 'git checkout uv.lock'."
        fi
        say "Installing Python packages from uv.lock${extras:+ (with [$extras])}"
        "$uv" "${sync[@]}" --quiet --python "$py" --project "$ROOT" ||
            die "installing from uv.lock failed (above)."
        rm -f "$venv"/.installed-*
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
