#!/usr/bin/env bash
# The project's own PostgreSQL server (the warehouse tests', and the pipeline's default
# target), on 127.0.0.1, time zone UTC.
#
#   scripts/postgres.sh start   # installs the server if missing (Debian), creates its data
#                               # folder on the first start, starts it; data is kept
#   scripts/postgres.sh stop    # stops it; the data stays for the next start
#   scripts/postgres.sh wipe    # stops it and deletes its data folder (the warehouse)
#
# The tests find it through TENIOS_TEST_PG_DSN (default below) and skip, saying why,
# when nothing answers there.
set -euo pipefail
# Below the kernel's ephemeral port range, so no client connection can hold it.
PGPORT="${PGPORT:-15432}"
DATA="${PGDATA_DIR:-/tmp/tap-tenios-pgdata-$PGPORT}"

find_bin() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

as_server_user() {
  # initdb and postgres refuse to run as root.
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
    chown -R postgres "$DATA"
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

start() {
  BIN="$(find_bin)"
  if [ -z "$BIN" ]; then
    if [ "$(id -u)" != 0 ]; then
      echo "PostgreSQL is not installed and this is not root: install it, then rerun." >&2
      exit 1
    fi
    echo "Installing PostgreSQL from Debian's packages..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    BIN="$(find_bin)"
  fi
  if "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PGPORT"; then
    echo "PostgreSQL already running on 127.0.0.1:$PGPORT"
    return
  fi
  # A folder that holds a cluster is the warehouse: started as it is, never recreated.
  if [ ! -f "$DATA/PG_VERSION" ]; then
    mkdir -p "$DATA"
    as_server_user "$BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --no-locale >/dev/null
  fi
  as_server_user "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $DATA -c timezone=UTC -c fsync=off" start >/dev/null
  echo "PostgreSQL $("$BIN/postgres" --version | awk '{print $3}') running on 127.0.0.1:$PGPORT (UTC)"
}

stop() {
  BIN="$(find_bin)"
  [ -n "$BIN" ] && [ -d "$DATA" ] || return 0
  as_server_user "$BIN/pg_ctl" -D "$DATA" -m fast stop >/dev/null 2>&1 || true
}

wipe() {
  stop
  rm -rf "$DATA"
  echo "Deleted $DATA"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  wipe) wipe ;;
  *) echo "usage: $0 start|stop|wipe" >&2; exit 2 ;;
esac
