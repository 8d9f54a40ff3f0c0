#!/usr/bin/env bash
# stop-db.sh: stop the private PostgreSQL cluster (.local/pg) that scripts/ensure-db.sh
# runs for non-root users. No-op when there is none or it is not running. A system
# cluster (Debian's 15/main, Homebrew's service) is never touched.
set -euo pipefail

PG_MAJOR=15
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROJECT_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
PRIV_DIR=$PROJECT_DIR/.local/pg
PRIV_DATA=$PRIV_DIR/data

say() { printf '==> %s\n' "$*" >&2; }

if [ ! -f "$PRIV_DATA/PG_VERSION" ]; then
    say "No private PostgreSQL cluster in .local/pg; nothing to stop"
    exit 0
fi

# pg_ctl: the binaries ensure-db.sh recorded, else the usual places.
find_pg_ctl() {
    local d want
    want=$(cat "$PRIV_DATA/PG_VERSION")
    for d in "$(cat "$PRIV_DIR/bindir" 2>/dev/null || true)" \
        "$(pg_config --bindir 2>/dev/null || true)" \
        "/usr/lib/postgresql/$want/bin" "/usr/lib/postgresql/$PG_MAJOR/bin" \
        "/opt/homebrew/opt/postgresql@$want/bin" "/usr/local/opt/postgresql@$want/bin" \
        "$(dirname "$(command -v pg_ctl 2>/dev/null || echo /nonexistent/pg_ctl)")"; do
        if [ -n "$d" ] && [ -x "$d/pg_ctl" ]; then
            printf '%s\n' "$d/pg_ctl"
            return 0
        fi
    done
    return 1
}

PG_CTL=$(find_pg_ctl) || {
    echo "stop-db: ERROR: pg_ctl not found; stop the server by hand (see $PRIV_DATA/postmaster.pid)" >&2
    exit 1
}

rc=0
"$PG_CTL" -D "$PRIV_DATA" status >/dev/null 2>&1 || rc=$?
if [ "$rc" -ne 0 ]; then
    # 3 = not running; anything else (e.g. 4 = no access) is worth showing.
    [ "$rc" -eq 3 ] || "$PG_CTL" -D "$PRIV_DATA" status >&2 || true
    say "Private PostgreSQL cluster (.local/pg) is not running"
    exit 0
fi

say "Stopping the private PostgreSQL cluster (.local/pg)"
# -m fast: disconnect clients (a dev server or test run) instead of waiting for them.
"$PG_CTL" -D "$PRIV_DATA" -m fast -w -t 60 stop >/dev/null
say "Stopped"
