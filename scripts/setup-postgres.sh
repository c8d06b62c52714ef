#!/usr/bin/env bash
# A private PostgreSQL for the shared-ledger tests and benchmark (and for trying --ledger postgres://
# on one machine): Debian's `postgresql` package, one cluster in a data directory of our own, on a
# free port of 127.0.0.1 only, with a socket directory beside it, run by an unprivileged user
# (postgres refuses to run as root). Idempotent: a second call reuses the cluster and starts it if
# it is stopped. Prints the connection URL on stdout (also written to $ROOT/url).
#   scripts/setup-postgres.sh          install if needed, init, start; print the URL
#   scripts/setup-postgres.sh stop     stop the cluster
# RANKCHAIN_PG_ROOT (default test/.tmp/postgres; /tmp/rankchain-postgres-<hash> when run as root
# from a directory the postgres user cannot enter) holds data/, sock/, log, port and url.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${RANKCHAIN_PG_ROOT:-$PWD/test/.tmp/postgres}
say() { printf '%s\n' "$*" >&2; }

find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
BIN=$(find_bin || true)
if [ -z "$BIN" ] || [ ! -x "$BIN/initdb" ]; then
  say "== installing Debian's postgresql"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
  BIN=$(find_bin)
fi

# who runs the server: ourselves, or (as root) the postgres system user the package created
if [ "$(id -u)" -eq 0 ]; then
  RUNAS=postgres
  id "$RUNAS" >/dev/null 2>&1 || useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin "$RUNAS"
  as_user() { (cd / && runuser -u "$RUNAS" -- "$@"); }
  # a clone under a private home (e.g. /root, mode 700) is out of the postgres user's reach
  if [ -z "${RANKCHAIN_PG_ROOT:-}" ] && ! as_user test -x "$PWD"; then
    ROOT=/tmp/rankchain-postgres-$(printf '%s' "$PWD" | md5sum | cut -c1-8)
  fi
else
  RUNAS=$(id -un)
  as_user() { "$@"; }
fi

if [ "${1:-}" = "stop" ]; then
  [ -f "$ROOT/data/PG_VERSION" ] && as_user "$BIN/pg_ctl" -D "$ROOT/data" -m fast -w stop >/dev/null 2>&1 || true
  exit 0
fi

mkdir -p "$ROOT/sock"
if [ ! -f "$ROOT/data/PG_VERSION" ]; then
  rm -rf "$ROOT/data"
  mkdir -p "$ROOT/data"
  [ "$(id -u)" -eq 0 ] && chown -R "$RUNAS" "$ROOT"
  as_user "$BIN/initdb" -D "$ROOT/data" -U rankchain --auth=trust -E UTF8 >/dev/null
  # a free port, chosen once and kept
  node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})' > "$ROOT/port"
fi
[ "$(id -u)" -eq 0 ] && chown -R "$RUNAS" "$ROOT"
PORT=$(cat "$ROOT/port")
if ! as_user "$BIN/pg_ctl" -D "$ROOT/data" status >/dev/null 2>&1; then
  as_user "$BIN/pg_ctl" -D "$ROOT/data" -l "$ROOT/log" -w -t 60 \
    -o "-p $PORT -k $ROOT/sock -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null
fi
URL="postgres://rankchain@127.0.0.1:$PORT/postgres"
echo "$URL" > "$ROOT/url"
echo "$URL"
