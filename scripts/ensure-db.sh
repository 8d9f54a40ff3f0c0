#!/usr/bin/env bash
# ensure-db.sh: make a local PostgreSQL 15 + PostGIS database available for gridpatrol
# with no hand steps. The Makefile runs it before `make run` and `make test`, then
# sources .local/env. It is idempotent, and fast when everything is already in place.
#
# What it does:
#   * DATABASE_URL set in the environment (bring your own PostGIS): only check that it
#     connects and that PostGIS is available, then write .local/env. No server is managed.
#   * Otherwise pick a server, in this order:
#       - non-root user whose private cluster (.local/pg) already exists: keep using it
#         (so the database does not silently move when a system server shows up later);
#       - whatever answers on 127.0.0.1:5432, if we can administer it;
#       - root on Debian: start (creating it if needed) the `15 main` cluster;
#       - a private cluster under .local/pg (trust auth, 127.0.0.1:54329 + unix socket
#         in .local/pg/sock), run as the current user.
#     Then install PostGIS if missing (root + apt only), and idempotently create the
#     role, the database and the template database `gridpatrol_template` (postgis +
#     pg_trgm, IS_TEMPLATE) from which tests create their per-run databases.
#   * Write .local/env (mode 600): DATABASE_URL and a GRIDPATROL_SECRET_KEY that is kept
#     across runs.
#
# Environment knobs:
#   GRIDPATROL_DB_USER / GRIDPATROL_DB_PASSWORD / GRIDPATROL_DB_NAME   (default: gridpatrol)
#   GRIDPATROL_DB_APP_USER / GRIDPATROL_DB_APP_PASSWORD  runtime role (default: gridpatrol_app)
#   GRIDPATROL_DB_TEMPLATE        template database name (default: gridpatrol_template)
#   GRIDPATROL_PG_PORT            port of the private cluster (default: 54329)
#   GRIDPATROL_PG_FORCE_PRIVATE=1 skip the system server, always use the private cluster
#
# Companion: scripts/stop-db.sh stops the private cluster.
set -euo pipefail

PG_MAJOR=15
PG_CLUSTER=main     # Debian cluster name (pg_lsclusters)
SYS_PORT=5432       # where a system server is looked for first

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROJECT_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
LOCAL_DIR=$PROJECT_DIR/.local
ENV_FILE=$LOCAL_DIR/env
LOCK_FILE=$LOCAL_DIR/.ensure-db.lock
PRIV_DIR=$LOCAL_DIR/pg
PRIV_DATA=$PRIV_DIR/data
PRIV_LOG=$PRIV_DIR/log
PRIV_PORT=${GRIDPATROL_PG_PORT:-54329}

DB_USER=${GRIDPATROL_DB_USER:-gridpatrol}
DB_PASSWORD=${GRIDPATROL_DB_PASSWORD:-gridpatrol}
# The app serves as a second, least-privileged role: it owns nothing, so it cannot disable
# the audit trail's triggers; migrations run as DB_USER (the owner).
APP_USER=${GRIDPATROL_DB_APP_USER:-gridpatrol_app}
APP_PASSWORD=${GRIDPATROL_DB_APP_PASSWORD:-gridpatrol_app}
DB_NAME=${GRIDPATROL_DB_NAME:-gridpatrol}
DB_TEMPLATE=${GRIDPATROL_DB_TEMPLATE:-gridpatrol_template}

# Never hang on a connection attempt or a password prompt (CI has no terminal).
export PGCONNECT_TIMEOUT=5

# Filled in while running.
BIN=""          # directory holding psql / pg_isready (and initdb / pg_ctl for the private cluster)
PSQL=""
PG_ISREADY=""
HOST=127.0.0.1  # where the app connects (always TCP on 127.0.0.1)
PORT=5432
SERVER_DESC=""  # human-readable description of the server in use
SU_MODE=""      # how we reach a superuser: tcp | runuser | socket
SU_USER=""
SU_SOCK=""      # socket directory (private cluster)
SERVER_VERSION=""
SERVER_MAJOR=""
POSTGIS_VER=""
TRGM_VER=""
TMP=""
LOCK_DIR=""     # set when using the mkdir fallback lock (no flock, e.g. macOS)

# ---------------------------------------------------------------------------- helpers

say()  { printf '==> %s\n' "$*" >&2; }
note() { printf '    %s\n' "$*" >&2; }
warn() { printf '==> WARNING: %s\n' "$*" >&2; }
# die MESSAGE [HINT...]: print an error plus indented hint lines and exit.
die() {
    printf 'ensure-db: ERROR: %s\n' "$1" >&2
    shift
    local line
    for line in "$@"; do printf '    %s\n' "$line" >&2; done
    exit 1
}
have()    { command -v "$1" >/dev/null 2>&1; }
is_root() { [ "$(id -u)" -eq 0 ]; }

cleanup() {
    [ -n "$TMP" ] && rm -rf "$TMP"
    [ -n "$LOCK_DIR" ] && rm -rf "$LOCK_DIR"
    return 0
}

# Run a command that may leave a daemon behind (pg_ctl, pg_ctlcluster) or that must not
# read our stdin (apt-get). fd 9 holds our flock: a daemon inheriting it would keep the
# lock forever and make every later run wait.
detached() { "$@" </dev/null 9>&-; }

# Percent-encode a URL component (byte-wise, RFC 3986 unreserved characters kept).
urlenc() {
    local s=$1 out="" c i
    local LC_ALL=C
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case $c in
            [A-Za-z0-9._~-]) out+=$c ;;
            *) printf -v c '%%%02X' "'$c"; out+=$c ;;
        esac
    done
    printf '%s' "$out"
}

# Hide the password in a URL before printing it.
redact() { printf '%s' "$1" | sed -E 's#^([a-zA-Z0-9+.-]+://[^:/@]*):[^@]*@#\1:***@#'; }

# Quote a value for a shell file, leaving it bare when that is safe (a bare
# `export KEY=value` line is valid both for `source` and for make's `include`).
shq() {
    case $1 in
        *[!A-Za-z0-9_./:@%+=,-]* | "") printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")" ;;
        *) printf '%s' "$1" ;;
    esac
}

# Value of `export NAME=...` in .local/env, unquoted (empty if absent).
env_file_get() {
    [ -f "$ENV_FILE" ] || return 0
    local v
    v=$(sed -n "s/^export $1=//p" "$ENV_FILE" | tail -n 1)
    case $v in
        \'*\') v=${v#\'}; v=${v%\'}; v=${v//\'\\\'\'/\'} ;;
        \"*\") v=${v#\"}; v=${v%\"} ;;
    esac
    printf '%s' "$v"
}

gen_secret() {
    if [ -r /dev/urandom ]; then
        od -An -tx1 -N32 /dev/urandom | tr -d ' \n'
    else
        python3 -c 'import secrets; print(secrets.token_hex(32), end="")'
    fi
}

# Serialise concurrent runs for this checkout (two `make test` in parallel, ...).
acquire_lock() {
    mkdir -p "$LOCAL_DIR"
    if have flock; then
        exec 9>"$LOCK_FILE"
        if ! flock -n 9; then
            say "Waiting for another ensure-db.sh run to finish..."
            flock -w 300 9 || die "timed out waiting for the lock $LOCK_FILE"
        fi
    else
        local waited=0
        until mkdir "$LOCK_FILE.d" 2>/dev/null; do
            if [ "$waited" -ge 300 ]; then
                warn "stale lock $LOCK_FILE.d? proceeding anyway (remove it if no other run is active)"
                return 0
            fi
            [ "$waited" -eq 0 ] && say "Waiting for another ensure-db.sh run to finish..."
            sleep 1
            waited=$((waited + 1))
        done
        LOCK_DIR=$LOCK_FILE.d
    fi
}

# ---------------------------------------------------------------------------- binaries

# Candidate directories for PostgreSQL programs, best first.
bindir_candidates() {
    local d p
    if d=$(pg_config --bindir 2>/dev/null); then printf '%s\n' "$d"; fi
    if [ -n "${1:-}" ] && [ "$1" != "$PG_MAJOR" ]; then printf '%s\n' "/usr/lib/postgresql/$1/bin"; fi
    printf '%s\n' "/usr/lib/postgresql/$PG_MAJOR/bin" \
        "/opt/homebrew/opt/postgresql@$PG_MAJOR/bin" "/usr/local/opt/postgresql@$PG_MAJOR/bin"
    for p in psql initdb pg_ctl; do
        if d=$(command -v "$p" 2>/dev/null); then dirname "$d"; fi
    done
}

# find_bindir WANTED_MAJOR PROG...: first candidate dir holding all PROGs and, if
# WANTED_MAJOR is non-empty, whose `postgres` is that major version.
find_bindir() {
    local want=$1 d prog ok ver
    shift
    while IFS= read -r d; do
        if [ -z "$d" ] || [ ! -d "$d" ]; then continue; fi
        ok=1
        for prog in "$@"; do
            [ -x "$d/$prog" ] || { ok=0; break; }
        done
        [ "$ok" = 1 ] || continue
        if [ -n "$want" ]; then
            ver=$("$d/postgres" -V 2>/dev/null | awk '{print $3}' | cut -d. -f1) || continue
            [ "$ver" = "$want" ] || continue
        fi
        printf '%s\n' "$d"
        return 0
    done < <(bindir_candidates "$want")
    return 1
}

find_client() {
    BIN=$(find_bindir "" psql pg_isready) || die "PostgreSQL client programs (psql, pg_isready) not found." \
        "Debian/Ubuntu: sudo apt-get install postgresql-$PG_MAJOR postgresql-$PG_MAJOR-postgis-3" \
        "macOS:         brew install postgresql@$PG_MAJOR postgis"
    PSQL=$BIN/psql
    PG_ISREADY=$BIN/pg_isready
}

# ---------------------------------------------------------------------------- SQL plumbing

# su_psql DB [psql args...]: psql as a superuser of the chosen server.
su_psql() {
    local db=$1
    shift
    case $SU_MODE in
        tcp) "$PSQL" -X -w -v ON_ERROR_STOP=1 -h "$HOST" -p "$PORT" -U "$SU_USER" -d "$db" "$@" ;;
        # cd /: runuser keeps our cwd, which the postgres user may not be allowed to enter.
        runuser) (cd / && runuser -u postgres -- "$PSQL" -X -w -v ON_ERROR_STOP=1 -p "$PORT" -d "$db" "$@") ;;
        socket) "$PSQL" -X -w -v ON_ERROR_STOP=1 -h "$SU_SOCK" -p "$PORT" -U "$SU_USER" -d "$db" "$@" ;;
        *) die "internal: no superuser access mode selected" ;;
    esac
}

# run_sql DB SQL [psql args...]: run SQL (which may use :'role' style variables and
# \gexec) as superuser; output/errors go to $TMP/sql.out. Returns psql's status.
run_sql() {
    local db=$1 sql=$2
    shift 2
    su_psql "$db" -q -At "$@" <<<"$sql" >"$TMP/sql.out" 2>&1
}

sql_die() {  # sql_die MESSAGE: die showing the output of the last run_sql
    local msg=$1
    die "$msg" "$(cat "$TMP/sql.out")"
}

# Does the current superuser mode work (and really give a superuser)?
probe_superuser() {
    local out
    out=$(su_psql postgres -At -c 'select rolsuper from pg_roles where rolname = current_user' 2>/dev/null) || return 1
    [ "$out" = t ]
}

# Try the ways to administer the server on $HOST:$PORT, in order.
find_superuser_system() {
    SU_MODE=tcp SU_USER=postgres
    probe_superuser && return 0
    # Homebrew and friends: the cluster's superuser is the OS user who ran initdb.
    local me
    me=$(id -un)
    if [ "$me" != postgres ] && [ "$me" != root ]; then
        SU_MODE=tcp SU_USER=$me
        probe_superuser && return 0
    fi
    if is_root && have runuser && id postgres >/dev/null 2>&1; then
        SU_MODE=runuser SU_USER=postgres
        probe_superuser && return 0
    fi
    SU_MODE="" SU_USER=""
    return 1
}

load_server_info() {
    local out
    out=$(su_psql postgres -At -F '|' -c "select split_part(current_setting('server_version'), ' ', 1),
            current_setting('server_version_num')::int / 10000,
            coalesce((select default_version from pg_available_extensions where name = 'postgis'), ''),
            coalesce((select default_version from pg_available_extensions where name = 'pg_trgm'), '')" 2>&1) ||
        die "cannot query the server on $HOST:$PORT:" "$out"
    IFS='|' read -r SERVER_VERSION SERVER_MAJOR POSTGIS_VER TRGM_VER <<<"$out"
}

# ---------------------------------------------------------------------------- bring your own

check_external() {
    local url=$DATABASE_URL shown psql_url out ver pgis created
    shown=$(redact "$url")
    # psql does not understand SQLAlchemy's "postgresql+psycopg2://" scheme.
    psql_url=$(printf '%s' "$url" | sed -E 's#^postgres(ql)?\+[a-z0-9_]+://#postgresql://#')
    find_client
    say "Using DATABASE_URL from the environment: $shown"
    if ! out=$("$PSQL" -X -w -At "$psql_url" -c 'select 1' 2>&1); then
        die "cannot connect to DATABASE_URL ($shown):" "$out" \
            "Fix the URL (user, password, host, port, database) or start that server;" \
            "or unset DATABASE_URL to let this script set up a local PostgreSQL + PostGIS."
    fi
    out=$("$PSQL" -X -w -At -F '|' "$psql_url" -c "select split_part(current_setting('server_version'), ' ', 1),
            coalesce((select default_version from pg_available_extensions where name = 'postgis'), ''),
            coalesce((select extversion from pg_extension where extname = 'postgis'), '')" 2>&1) ||
        die "connected to DATABASE_URL ($shown) but could not query it:" "$out"
    IFS='|' read -r ver pgis created <<<"$out"
    say "PostgreSQL $ver (from DATABASE_URL)"
    [ -n "$pgis" ] || die "PostGIS is not installed on the server behind DATABASE_URL ($shown)." \
        "Install it on that server (Debian/Ubuntu: apt-get install postgresql-${ver%%.*}-postgis-3;" \
        "macOS: brew install postgis; Docker: use the postgis/postgis image)," \
        "or unset DATABASE_URL to let this script set up a local PostgreSQL + PostGIS."
    say "PostGIS $pgis available"
    if [ -z "$created" ]; then
        note "(the postgis extension is not created in that database yet; creating it needs a superuser:"
        note " CREATE EXTENSION postgis; CREATE EXTENSION pg_trgm;)"
    fi
    write_env "$url" external "${GRIDPATROL_MIGRATION_URL:-$url}"
}

# ---------------------------------------------------------------------------- servers

# Wait until $HOST:$PORT accepts connections (a just-started server may still be in recovery).
wait_ready() {
    local i
    for ((i = 0; i < 60; i++)); do
        "$PG_ISREADY" -q -h "$HOST" -p "$PORT" -t 2 && return 0
        sleep 0.5
    done
    return 1
}

# Root on Debian: start the `15 main` cluster, creating it first if there is none.
start_debian_cluster() {
    local line port status
    line=$(pg_lsclusters -h 2>/dev/null | awk -v v="$PG_MAJOR" -v c="$PG_CLUSTER" '$1 == v && $2 == c')
    if [ -z "$line" ]; then
        [ -x "/usr/lib/postgresql/$PG_MAJOR/bin/postgres" ] ||
            die "the PostgreSQL $PG_MAJOR server is not installed." \
                "Install it: apt-get install postgresql-$PG_MAJOR postgresql-$PG_MAJOR-postgis-3"
        say "Creating PostgreSQL $PG_MAJOR cluster '$PG_CLUSTER' (pg_createcluster)"
        detached pg_createcluster --encoding=UTF8 --locale=C "$PG_MAJOR" "$PG_CLUSTER" >"$TMP/createcluster.log" 2>&1 ||
            die "pg_createcluster $PG_MAJOR $PG_CLUSTER failed:" "$(tail -n 20 "$TMP/createcluster.log")"
        line=$(pg_lsclusters -h 2>/dev/null | awk -v v="$PG_MAJOR" -v c="$PG_CLUSTER" '$1 == v && $2 == c')
    fi
    port=$(awk '{print $3}' <<<"$line")
    status=$(awk '{print $4}' <<<"$line")
    PORT=$port
    if [ "${status%%,*}" != online ]; then
        say "Starting PostgreSQL $PG_MAJOR cluster '$PG_CLUSTER' on port $port (pg_ctlcluster)"
        # --skip-systemctl-redirect: works without systemd (containers, CI).
        if ! detached pg_ctlcluster --skip-systemctl-redirect "$PG_MAJOR" "$PG_CLUSTER" start >"$TMP/ctlcluster.log" 2>&1; then
            # Someone else may have started it meanwhile; only fail if it is really down.
            "$PG_ISREADY" -q -h "$HOST" -p "$PORT" -t 5 ||
                die "could not start the PostgreSQL $PG_MAJOR cluster:" "$(tail -n 20 "$TMP/ctlcluster.log")" \
                    "See /var/log/postgresql/postgresql-$PG_MAJOR-$PG_CLUSTER.log"
        fi
    fi
    wait_ready || die "PostgreSQL $PG_MAJOR/$PG_CLUSTER runs but does not accept TCP connections on $HOST:$PORT." \
        "Check listen_addresses/port in /etc/postgresql/$PG_MAJOR/$PG_CLUSTER/postgresql.conf"
    SERVER_DESC="Debian cluster $PG_MAJOR/$PG_CLUSTER"
}

# The private cluster's socket directory: .local/pg/sock, unless that path is too long for a
# unix socket (about 100 bytes on Linux/macOS), then a short per-checkout dir under /tmp.
private_sock_dir() {
    local sock=$PRIV_DIR/sock
    if [ $((${#sock} + 20)) -gt 100 ]; then
        sock=/tmp/gridpatrol-pg-$(id -u)-$(printf '%s' "$PROJECT_DIR" | cksum | awk '{print $1}')
    fi
    printf '%s' "$sock"
}

# Conf quoting: a single quote inside a postgresql.conf string is doubled.
conf_quote() { printf "'%s'" "${1//\'/\'\'}"; }

init_private() {
    local tmpdata=$PRIV_DIR/data.initdb.$$
    say "Creating a private PostgreSQL cluster in .local/pg (initdb)"
    mkdir -p "$PRIV_DIR"
    chmod 700 "$PRIV_DIR"
    rm -rf "$tmpdata"
    # initdb into a temporary directory and rename it, so an interrupted run never
    # leaves a half-initialised .local/pg/data behind.
    if ! "$BIN/initdb" -D "$tmpdata" --auth=trust -E UTF8 --locale=C >"$PRIV_DIR/initdb.log" 2>&1; then
        rm -rf "$tmpdata"
        die "initdb failed:" "$(tail -n 20 "$PRIV_DIR/initdb.log")"
    fi
    # Port, listen address and socket dir live in an included file rewritten at each start.
    printf "\n# Added by scripts/ensure-db.sh\ninclude_if_exists = 'gridpatrol.conf'\n" >>"$tmpdata/postgresql.conf"
    mv "$tmpdata" "$PRIV_DATA"
}

# Private cluster under .local/pg, owned and run by the current (non-root) user.
use_private() {
    if is_root; then
        die "the private cluster cannot run as root (initdb/postgres refuse to)." \
            "Run as a normal user, let the script use the system cluster (unset GRIDPATROL_PG_FORCE_PRIVATE)," \
            "or point DATABASE_URL at a PostGIS database."
    fi
    local want="" sock pid_port pid_sock
    [ -f "$PRIV_DATA/PG_VERSION" ] && want=$(cat "$PRIV_DATA/PG_VERSION")
    BIN=$(find_bindir "$want" initdb pg_ctl postgres psql pg_isready) || {
        if [ -n "$want" ]; then
            die "no PostgreSQL $want server binaries found for the existing private cluster in .local/pg/data." \
                "Install PostgreSQL $want, or delete .local/pg to start over (its data is lost)."
        fi
        die "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found." \
            "Debian/Ubuntu: sudo apt-get install postgresql-$PG_MAJOR postgresql-$PG_MAJOR-postgis-3" \
            "macOS:         brew install postgresql@$PG_MAJOR postgis" \
            "Or set DATABASE_URL to an existing PostGIS database."
    }
    PSQL=$BIN/psql
    PG_ISREADY=$BIN/pg_isready
    [ -f "$PRIV_DATA/PG_VERSION" ] || init_private
    # Remember which binaries run it, for scripts/stop-db.sh.
    [ "$(cat "$PRIV_DIR/bindir" 2>/dev/null || true)" = "$BIN" ] || printf '%s\n' "$BIN" >"$PRIV_DIR/bindir"

    if "$BIN/pg_ctl" -D "$PRIV_DATA" status >/dev/null 2>&1; then
        # Already running: trust what it really listens on (postmaster.pid lines 4 and 5).
        pid_port=$(sed -n 4p "$PRIV_DATA/postmaster.pid")
        pid_sock=$(sed -n 5p "$PRIV_DATA/postmaster.pid")
        PORT=$pid_port
        SU_SOCK=$pid_sock
        if [ "$PORT" != "$PRIV_PORT" ]; then
            warn "the private cluster runs on port $PORT, not $PRIV_PORT; run scripts/stop-db.sh to apply the new port"
        fi
    else
        sock=$(private_sock_dir)
        mkdir -p "$sock"
        chmod 700 "$sock"
        PORT=$PRIV_PORT
        SU_SOCK=$sock
        local rc=0
        "$PG_ISREADY" -q -h "$HOST" -p "$PORT" -t 2 || rc=$?
        if [ "$rc" -le 1 ]; then  # 0 = accepting, 1 = starting up: either way, taken
            die "port $PORT on $HOST is already used by another server." \
                "Pick another port: GRIDPATROL_PG_PORT=54330 make ..."
        fi
        {
            echo "# Written by scripts/ensure-db.sh before each start; edits are overwritten."
            echo "listen_addresses = '$HOST'"
            echo "port = $PORT"
            echo "unix_socket_directories = $(conf_quote "$sock")"
        } >"$PRIV_DATA/gridpatrol.conf"
        say "Starting the private PostgreSQL cluster (.local/pg) on $HOST:$PORT"
        detached "$BIN/pg_ctl" -D "$PRIV_DATA" -l "$PRIV_LOG" -w -t 60 start >"$TMP/pg_ctl.log" 2>&1 ||
            die "could not start the private cluster:" "$(tail -n 15 "$PRIV_LOG" 2>/dev/null || cat "$TMP/pg_ctl.log")" \
                "Full log: $PRIV_LOG"
    fi
    wait_ready || die "the private cluster does not accept connections on $HOST:$PORT (see $PRIV_LOG)"
    SU_MODE=socket SU_USER=$(id -un)
    probe_superuser || die "cannot connect to the private cluster as superuser '$SU_USER' via $SU_SOCK." \
        "See $PRIV_LOG; deleting .local/pg starts over (its data is lost)."
    SERVER_DESC="private cluster .local/pg"
}

# If we cannot administer the server on 5432 but it was already provisioned (e.g. by root
# earlier), using it as the app role is fine.
app_already_provisioned() {
    local out
    out=$("$PSQL" -X -w -At -F '|' "$(app_url)" 2>/dev/null <<SQL
select (select count(*) from pg_extension where extname in ('postgis', 'pg_trgm')) = 2
   and exists (select from pg_database where datname = '${DB_TEMPLATE//\'/\'\'}' and datistemplate
               and pg_get_userbyid(datdba) = current_user);
SQL
) || return 1
    [ "$out" = t ]
}

# Decide which server to use; sets HOST/PORT/SU_* (SU_MODE empty = no admin needed).
choose_server() {
    if [ "${GRIDPATROL_PG_FORCE_PRIVATE:-0}" = 1 ]; then
        use_private
        return
    fi
    if ! is_root && [ -f "$PRIV_DATA/PG_VERSION" ]; then
        use_private
        return
    fi
    find_client
    PORT=$SYS_PORT
    local rc=0
    "$PG_ISREADY" -q -h "$HOST" -p "$PORT" -t 3 || rc=$?
    # 1 = "server is starting up": give it a moment instead of going elsewhere.
    if [ "$rc" -eq 1 ] && wait_ready; then rc=0; fi
    if [ "$rc" -eq 0 ]; then
        SERVER_DESC="existing server"
        find_superuser_system && return 0
        if app_already_provisioned; then
            say "PostgreSQL on $HOST:$PORT (no superuser access for $(id -un), but $DB_NAME is already set up)"
            return 0
        fi
        if is_root; then
            die "a server answers on $HOST:$PORT but I cannot get superuser access to it." \
                "Tried: psql -h $HOST -U postgres (needs trust/peer/.pgpass) and runuser -u postgres -- psql." \
                "Fix pg_hba.conf, or set DATABASE_URL to a PostGIS database you manage yourself."
        fi
        say "A server answers on $HOST:$PORT but $(id -un) cannot administer it; using a private cluster instead"
        use_private
    elif is_root && have pg_lsclusters; then
        start_debian_cluster
        find_superuser_system || die "cannot get superuser access to the $PG_MAJOR/$PG_CLUSTER cluster." \
            "Tried: psql -h $HOST -U postgres and runuser -u postgres -- psql (port $PORT)."
    else
        use_private
    fi
}

# ---------------------------------------------------------------------------- PostGIS

install_postgis_apt() {
    local pkg="postgresql-$SERVER_MAJOR-postgis-3" log=$TMP/apt.log
    local opts=(-y -q -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
    say "PostGIS missing: installing $pkg (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    if ! detached apt-get install "${opts[@]}" "$pkg" >"$log" 2>&1; then
        # Fresh machines/containers often have no package lists yet.
        note "install failed, running apt-get update and retrying"
        { detached apt-get update -q >>"$log" 2>&1 && detached apt-get install "${opts[@]}" "$pkg" >>"$log" 2>&1; } ||
            die "apt-get install $pkg failed:" "$(tail -n 15 "$log")"
    fi
}

ensure_postgis() {
    if [ -z "$POSTGIS_VER" ]; then
        if is_root && have apt-get; then
            install_postgis_apt
            load_server_info
            [ -n "$POSTGIS_VER" ] || die "postgresql-$SERVER_MAJOR-postgis-3 is installed but the server on $HOST:$PORT does not see PostGIS." \
                "Is that server a different installation (another version, a container)?"
        else
            die "PostGIS is not installed for PostgreSQL $SERVER_MAJOR ($SERVER_DESC)." \
                "Debian/Ubuntu: sudo apt-get install postgresql-$SERVER_MAJOR-postgis-3" \
                "macOS:         brew install postgis" \
                "then run this again."
        fi
    fi
    say "PostGIS $POSTGIS_VER available"
    [ -n "$TRGM_VER" ] || die "the pg_trgm extension (PostgreSQL contrib) is missing on $HOST:$PORT." \
        "Debian: it ships with postgresql-$SERVER_MAJOR; elsewhere install the postgresql contrib package."
}

# ---------------------------------------------------------------------------- provisioning

app_url() {
    printf 'postgresql://%s:%s@%s:%s/%s' "$(urlenc "$DB_USER")" "$(urlenc "$DB_PASSWORD")" "$HOST" "$PORT" "$(urlenc "$DB_NAME")"
}

runtime_url() {
    printf 'postgresql://%s:%s@%s:%s/%s' "$(urlenc "$APP_USER")" "$(urlenc "$APP_PASSWORD")" "$HOST" "$PORT" "$(urlenc "$DB_NAME")"
}

# Create database $1 owned by the role unless it exists. Encoding UTF8 with collation C
# (byte order: fast, identical on every machine) but a UTF-8 LC_CTYPE, because with
# LC_CTYPE=C pg_trgm treats CJK characters as non-word characters and ignores them.
create_database() {
    local name=$1 ctype out
    out=$(su_psql postgres -At -v n="$name" <<<"select 1 from pg_database where datname = :'n'") ||
        die "cannot list databases:" "$out"
    [ "$out" = 1 ] && return 0
    for ctype in C.UTF-8 C.utf8 en_US.UTF-8 en_US.utf8 C; do
        if run_sql postgres "SELECT format('CREATE DATABASE %I OWNER %I TEMPLATE template0 ENCODING ''UTF8'' LC_COLLATE ''C'' LC_CTYPE %L', :'n', :'role', :'ctype') \\gexec" \
            -v n="$name" -v role="$DB_USER" -v ctype="$ctype"; then
            say "Created database $name (UTF8, LC_CTYPE $ctype)"
            [ "$ctype" = C ] && warn "no UTF-8 locale available: pg_trgm will ignore non-ASCII (e.g. Chinese) text in $name"
            return 0
        fi
        # Unknown locale on this OS (try the next one), or created concurrently.
        out=$(su_psql postgres -At -v n="$name" <<<"select 1 from pg_database where datname = :'n'") || true
        [ "$out" = 1 ] && return 0
    done
    sql_die "could not create database $name:"
}

SQL_ROLE=$(cat <<'SQL'
SET client_min_messages = warning;
SELECT format('CREATE ROLE %I', :'role')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
-- Re-applied every run so the documented password and attributes always hold.
SELECT format('ALTER ROLE %I LOGIN CREATEDB NOSUPERUSER PASSWORD %L', :'role', :'pw') \gexec
SQL
)

SQL_APP_ROLE=$(cat <<'SQL'
SET client_min_messages = warning;
SELECT format('CREATE ROLE %I', :'role')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I LOGIN NOCREATEDB NOCREATEROLE NOSUPERUSER PASSWORD %L', :'role', :'pw') \gexec
SQL
)

SQL_DATABASES=$(cat <<'SQL'
SET client_min_messages = warning;
SELECT format('ALTER DATABASE %I OWNER TO %I', datname, :'role') FROM pg_database
 WHERE datname IN (:'db', :'tpl') AND pg_get_userbyid(datdba) <> :'role' \gexec
-- IS_TEMPLATE lets the (non-superuser) owner run CREATE DATABASE x TEMPLATE <tpl>.
SELECT format('ALTER DATABASE %I IS_TEMPLATE true', datname) FROM pg_database
 WHERE datname = :'tpl' AND NOT datistemplate \gexec
SQL
)

# Run in each database as superuser. Only writes when something is missing, so the fast
# path takes no locks that could disturb a running app or test.
SQL_PER_DB=$(cat <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE EXTENSION IF NOT EXISTS pg_trgm;
-- PG15: public is owned by pg_database_owner (= the role); this covers clusters upgraded
-- from older versions where public belongs to the bootstrap superuser.
SELECT format('GRANT ALL ON SCHEMA public TO %I', :'role')
 WHERE NOT (has_schema_privilege(:'role', 'public', 'USAGE') AND has_schema_privilege(:'role', 'public', 'CREATE')) \gexec
-- spatial_ref_sys belongs to the superuser who created postgis; let the app read it and
-- add custom SRIDs.
SELECT format('GRANT ALL ON TABLE %s TO %I', t, :'role')
  FROM (SELECT to_regclass('spatial_ref_sys') AS t) s
 WHERE t IS NOT NULL AND NOT has_table_privilege(:'role', t::oid, 'INSERT') \gexec
SQL
)

provision() {
    run_sql postgres "$SQL_ROLE" -v role="$DB_USER" -v pw="$DB_PASSWORD" ||
        { sleep 1; run_sql postgres "$SQL_ROLE" -v role="$DB_USER" -v pw="$DB_PASSWORD"; } ||  # concurrent CREATE ROLE
        sql_die "could not create/update role $DB_USER:"
    run_sql postgres "$SQL_APP_ROLE" -v role="$APP_USER" -v pw="$APP_PASSWORD" ||
        { sleep 1; run_sql postgres "$SQL_APP_ROLE" -v role="$APP_USER" -v pw="$APP_PASSWORD"; } ||
        sql_die "could not create/update role $APP_USER:"
    create_database "$DB_TEMPLATE"
    create_database "$DB_NAME"
    run_sql postgres "$SQL_DATABASES" -v role="$DB_USER" -v db="$DB_NAME" -v tpl="$DB_TEMPLATE" ||
        sql_die "could not set owner/template flag of $DB_NAME/$DB_TEMPLATE:"
    local db
    for db in "$DB_TEMPLATE" "$DB_NAME"; do
        run_sql "$db" "$SQL_PER_DB" -v role="$DB_USER" ||
            sql_die "could not set up extensions/grants in $db:"
    done
}

# Connect exactly as the app will (TCP + password) and check PostGIS really works.
verify_app() {
    local url out hba=""
    url=$(app_url)
    if ! out=$("$PSQL" -X -w -At -F '|' "$url" -c \
        "select postgis_lib_version(), (select count(*) from spatial_ref_sys), (select count(*) from pg_extension where extname = 'pg_trgm')" 2>&1); then
        if [ -n "$SU_MODE" ]; then hba=$(su_psql postgres -At -c 'show hba_file' 2>/dev/null || true); fi
        die "the app cannot connect as $DB_USER to $(redact "$url"):" "$out" \
            "Make sure pg_hba.conf${hba:+ ($hba)} allows host $DB_NAME $DB_USER 127.0.0.1/32 with scram-sha-256, md5 or trust."
    fi
    local lib n trgm
    IFS='|' read -r lib n trgm <<<"$out"
    [ "$n" -gt 0 ] 2>/dev/null || die "spatial_ref_sys in $DB_NAME is empty or unreadable for $DB_USER ($out)"
    [ "$trgm" = 1 ] || die "pg_trgm is not installed in $DB_NAME"
    say "Database $DB_NAME ready (role $DB_USER, template $DB_TEMPLATE; postgis $lib, pg_trgm)"
}

verify_runtime() {
    local out
    out=$("$PSQL" -X -w -At "$(runtime_url)" -c "select current_user" 2>&1) ||
        die "the app cannot connect as $APP_USER to $(redact "$(runtime_url)"):" "$out" \
            "Make sure pg_hba.conf allows host $DB_NAME $APP_USER 127.0.0.1/32."
}

# ---------------------------------------------------------------------------- .local/env

# write_env URL MODE [MIGRATION_URL]: (re)write .local/env, keeping an existing secret key.
# DATABASE_URL is what the app serves with; GRIDPATROL_MIGRATION_URL (the owner) migrates.
# Only replaces the file when its content changes (atomically, via rename).
write_env() {
    local url=$1 mode=$2 migration_url=${3:-$1} key tmpf
    key=$(env_file_get GRIDPATROL_SECRET_KEY)
    [ -n "$key" ] || key=$(gen_secret)
    mkdir -p "$LOCAL_DIR"
    tmpf=$(mktemp "$LOCAL_DIR/.env.XXXXXX")
    {
        echo "# Generated by scripts/ensure-db.sh; re-run it instead of editing (the secret key is kept)."
        echo "# ensure-db-mode: $mode"
        printf 'export DATABASE_URL=%s\n' "$(shq "$url")"
        printf 'export GRIDPATROL_MIGRATION_URL=%s\n' "$(shq "$migration_url")"
        printf 'export GRIDPATROL_SECRET_KEY=%s\n' "$(shq "$key")"
    } >"$tmpf"
    chmod 600 "$tmpf"
    if [ -f "$ENV_FILE" ] && cmp -s "$tmpf" "$ENV_FILE"; then
        rm -f "$tmpf"
        chmod 600 "$ENV_FILE"
    else
        mv -f "$tmpf" "$ENV_FILE"
        say "Wrote .local/env (DATABASE_URL=$(redact "$url"))"
    fi
}

# A DATABASE_URL that merely echoes what we wrote last time (because the caller sourced
# .local/env first) is not a user-supplied database: keep managing the server.
url_is_ours() {
    [ -f "$ENV_FILE" ] && grep -qx '# ensure-db-mode: managed' "$ENV_FILE" &&
        [ "$(env_file_get DATABASE_URL)" = "$DATABASE_URL" ]
}

# ---------------------------------------------------------------------------- main

main() {
    trap cleanup EXIT
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/ensure-db.XXXXXX")
    acquire_lock

    if [ -n "${DATABASE_URL:-}" ] && ! url_is_ours; then
        check_external
        return 0
    fi

    # From here on we pick the connection targets ourselves.
    unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGSERVICE PGOPTIONS

    choose_server
    if [ -n "$SU_MODE" ]; then
        load_server_info
        say "PostgreSQL $SERVER_VERSION on $HOST:$PORT ($SERVER_DESC)"
        [ "$SERVER_MAJOR" = "$PG_MAJOR" ] || warn "expected PostgreSQL $PG_MAJOR, found $SERVER_MAJOR; continuing"
        ensure_postgis
        provision
    fi
    verify_app
    verify_runtime
    write_env "$(runtime_url)" managed "$(app_url)"
}

main "$@"
