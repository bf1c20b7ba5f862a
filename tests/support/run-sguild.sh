#!/usr/bin/env bash
# run-sguild.sh - start/stop a throw-away Sguil server (sguild) + MariaDB on loopback.
# A copy of the team's tool, kept with the tests so the project stands alone.
#
# Usage:
#   SGUIL_SRC=/tmp/sguil-src run-sguild.sh [start|stop|status|restart-sguild|stop-sguild|start-db|stop-db|env|clean]
#
#   start           (default) stop anything this script started before, (re)start a
#                   private MariaDB, load a FRESH sguildb from
#                   $SGUIL_SRC/server/sql_scripts/create_sguildb.sql, start sguild,
#                   wait until it listens, then print "SGUILD_SENSOR_PORT=<port>" etc.
#   stop            stop sguild (and its forked children) and MariaDB, by recorded PID.
#   status          show what is running.
#   restart-sguild  restart only sguild, keeping the database (for reconnect tests).
#   stop-sguild     stop only sguild (MariaDB keeps running).
#   stop-db|start-db  stop / start only MariaDB (for "DB down" tests).
#   env             print the settings as shell assignments.
#   clean           stop everything and delete $SGUIL_STATE.
#
# Environment (all optional except SGUIL_SRC for start):
#   SGUIL_SRC          extracted sguil source tree (must contain server/sguild,
#                      server/lib/, server/sql_scripts/create_sguildb.sql). Used in place,
#                      nothing is copied out of it.
#   SGUIL_STATE        state directory, must be under /tmp   (default /tmp/sguild-test)
#   SGUIL_SENSOR_PORT  agent port                            (default 7736)
#   SGUIL_CLIENT_PORT  analyst-client port                   (default 7734)
#   SGUIL_DB_PORT      private MariaDB TCP port (127.0.0.1)  (default 3307)
#   SGUIL_DEBUG        sguild DEBUG level 0|1|2              (default 1; 2 logs every line)
#   SGUIL_KEEP_DB      1 = do not drop/recreate sguildb on start (default 0)
#   SGUIL_START_TIMEOUT seconds to wait for sguild to listen (default 180). sguild loads
#                      every status-0 event into memory before it listens (O(n^2)):
#                      ~45 s for 10,000 unclassified events.
#   SGUIL_SQL_MODE     sql_mode for MariaDB (default: empty = permissive, like the
#                      MySQL 5.x servers sguild was written for). "MARIADB_DEFAULT" keeps
#                      MariaDB 10.11's strict default (STRICT_TRANS_TABLES,...), under which
#                      sguild cannot even register a new sensor (ARCHITECTURE.md, "Sguil's agent protocol").
#   SGUIL_EXPLICIT_TS  explicit_defaults_for_timestamp (default OFF: legacy TIMESTAMP
#                      auto-default that create_sguildb.sql relies on for sensor.updated)
#   SGUIL_TZ           TZ for sguild (default UTC). sguild derives the per-day table name
#                      by parsing the event timestamp in ITS local zone; keep UTC.
#
# TLS: there is no server-side switch. sguild (>= 0.7, incl. SGUIL-1.0.0) upgrades an agent
# connection to TLS right after a matching "VersionInfo"; an agent that never sends
# VersionInfo stays in plaintext and is still accepted (observed; ARCHITECTURE.md, "Sguil's agent protocol").
# So the TLS/plaintext choice is made by the client (skip VersionInfo for plaintext).
# A self-signed cert/key is generated in $SGUIL_STATE/sguild/certs/{cert,privkey}.pem.
#
# Everything (datadir, sockets, logs, certs, pid files) lives in $SGUIL_STATE.
# Only loopback is used: MariaDB binds 127.0.0.1, sguild binds 127.0.0.1.
set -euo pipefail

STATE=${SGUIL_STATE:-/tmp/sguild-test}
SENSOR_PORT=${SGUIL_SENSOR_PORT:-7736}
CLIENT_PORT=${SGUIL_CLIENT_PORT:-7734}
DB_PORT=${SGUIL_DB_PORT:-3307}
DEBUG_LEVEL=${SGUIL_DEBUG:-1}
KEEP_DB=${SGUIL_KEEP_DB:-0}
DB_NAME=sguildb
DB_USER=sguil
DB_PASS=sguilpw

case "$STATE" in
  /tmp/*) ;;
  *) echo "SGUIL_STATE must be under /tmp (got $STATE)" >&2; exit 2 ;;
esac

DBDIR=$STATE/db
MYCNF=$STATE/my.cnf
DBSOCK=$STATE/mysqld.sock
DBPIDF=$STATE/mysqld.pid        # written by mariadbd itself
DBLOG=$STATE/mysqld.err
RUNDIR=$STATE/sguild            # sguild's cwd; holds conf/access/certs/logs
SGPIDF=$STATE/sguild.pid        # written by this script ($! of tclsh)
SGLOG=$STATE/sguild.log         # sguild stdout+stderr

log() { echo "[run-sguild] $*" >&2; }

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
read_pid() { [ -f "$1" ] && tr -dc '0-9' <"$1" || true; }

mysql_cli() { mariadb --defaults-file="$MYCNF" --protocol=socket -u"$(id -un)" "$@"; }

need_tools() {
  local miss=()
  for t in tclsh mariadbd mariadb mariadb-install-db openssl ss; do
    command -v "$t" >/dev/null 2>&1 || miss+=("$t")
  done
  if ((${#miss[@]})); then
    log "missing tools: ${miss[*]}"
    log "install: apt-get update && apt-get install -y --no-install-recommends tcl tcllib tcl-tls mysqltcl tclx8.4 mariadb-server mariadb-client openssl iproute2"
    exit 3
  fi
  local t
  t=$(printf 'foreach p {mysqltcl Tclx sha1 base64 tls} { if {[catch {package require $p}]} { puts -nonewline "$p " } }\n' | tclsh)
  if [ -n "$t" ]; then
    log "missing Tcl packages: $t (apt-get install tcllib tcl-tls mysqltcl tclx8.4)"
    exit 3
  fi
}

write_mycnf() {
  mkdir -p "$STATE" "$STATE/tmp"
  {
    echo "[client]"
    echo "socket=$DBSOCK"
    echo "[mysqld]"
    echo "datadir=$DBDIR"
    echo "socket=$DBSOCK"
    echo "pid-file=$DBPIDF"
    echo "port=$DB_PORT"
    echo "bind-address=127.0.0.1"
    echo "skip-name-resolve"
    echo "log-error=$DBLOG"
    # A temporary dir of its own: bootstraps sharing /tmp (parallel tests) delete each
    # other's temporary tables ("Installation of system tables failed!", seen here).
    echo "tmpdir=$STATE/tmp"
    echo "user=$(id -un)"
    echo "innodb_buffer_pool_size=64M"
    echo "performance_schema=OFF"
    if [ "${SGUIL_SQL_MODE-}" != MARIADB_DEFAULT ]; then echo "sql_mode='${SGUIL_SQL_MODE-}'"; fi
    echo "explicit_defaults_for_timestamp=${SGUIL_EXPLICIT_TS:-OFF}"
  } >"$MYCNF"
}

db_running() { pid_alive "$(read_pid "$DBPIDF")"; }

start_db() {
  write_mycnf
  if db_running; then log "MariaDB already running (pid $(read_pid "$DBPIDF"))"; return 0; fi
  if [ ! -d "$DBDIR/mysql" ]; then
    log "initialising MariaDB datadir $DBDIR"
    rm -rf "$DBDIR"; mkdir -p "$DBDIR"
    TMPDIR=$STATE/tmp mariadb-install-db --defaults-file="$MYCNF" --auth-root-authentication-method=socket \
      --skip-test-db >"$STATE/mysql-install.log" 2>&1 || { cat "$STATE/mysql-install.log" >&2; exit 4; }
  fi
  log "starting MariaDB on 127.0.0.1:$DB_PORT"
  # mariadbd daemonises itself? no: run it in background in its own session.
  setsid mariadbd --defaults-file="$MYCNF" >>"$DBLOG" 2>&1 </dev/null &
  local i
  for i in $(seq 1 60); do
    if mysql_cli -e 'SELECT 1' >/dev/null 2>&1; then log "MariaDB up (pid $(read_pid "$DBPIDF"))"; return 0; fi
    sleep 0.5
  done
  log "MariaDB did not come up; see $DBLOG"; tail -20 "$DBLOG" >&2; exit 4
}

stop_db() {
  local pid; pid=$(read_pid "$DBPIDF")
  if pid_alive "$pid"; then
    log "stopping MariaDB pid $pid"
    kill -TERM "$pid"
    local i; for i in $(seq 1 60); do pid_alive "$pid" || break; sleep 0.5; done
    if pid_alive "$pid"; then log "MariaDB pid $pid still alive, SIGKILL"; kill -KILL "$pid" || true; fi
  fi
}

fresh_db() {
  local schema=$SGUIL_SRC/server/sql_scripts/create_sguildb.sql
  [ -f "$schema" ] || { log "schema not found: $schema"; exit 5; }
  if [ "$KEEP_DB" = 1 ] && mysql_cli -e "USE $DB_NAME" 2>/dev/null; then
    log "keeping existing $DB_NAME"
  else
    log "creating fresh $DB_NAME from $schema"
    mysql_cli -e "DROP DATABASE IF EXISTS $DB_NAME; CREATE DATABASE $DB_NAME;"
    mysql_cli "$DB_NAME" <"$schema"
  fi
  mysql_cli -e "CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
                CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
                GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'127.0.0.1';
                GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'localhost';
                FLUSH PRIVILEGES;"
}

make_certs() {
  mkdir -p "$RUNDIR/certs"
  if [ ! -s "$RUNDIR/certs/cert.pem" ] || [ ! -s "$RUNDIR/certs/privkey.pem" ]; then
    log "generating self-signed certificate in $RUNDIR/certs"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=127.0.0.1" \
      -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
      -keyout "$RUNDIR/certs/privkey.pem" -out "$RUNDIR/certs/cert.pem" >/dev/null 2>&1
  fi
}

write_sguild_conf() {
  mkdir -p "$RUNDIR/logs" "$RUNDIR/load" "$RUNDIR/archive" "$RUNDIR/rules" "$RUNDIR/tmp"
  # sguild evaluates every non-comment line as a 3-word Tcl "set NAME VALUE".
  cat >"$RUNDIR/sguild.conf" <<EOF
# generated by run-sguild.sh
set SGUILD_LIB_PATH $SGUIL_SRC/server/lib
set DEBUG $DEBUG_LEVEL
set DAEMON 0
set SYSLOGFACILITY daemon
set SENSOR_AGGREGATION_ON 1
set BIND_SENSOR_IP_ADDR 127.0.0.1
set BIND_CLIENT_IP_ADDR 127.0.0.1
set SERVERPORT $CLIENT_PORT
set SENSORPORT $SENSOR_PORT
set HTTPS 0
set RULESDIR $RUNDIR/rules
set TMPDATADIR $RUNDIR/tmp
set DBNAME $DB_NAME
set DBPASS $DB_PASS
set DBHOST 127.0.0.1
set DBPORT $DB_PORT
set DBUSER $DB_USER
set LOCAL_LOG_DIR $RUNDIR/archive
set TMP_LOAD_DIR $RUNDIR/load
set TCPFLOW /usr/bin/tcpflow
set P0F 0
set P0F_PATH /usr/sbin/p0f
set EMAIL_FILE $RUNDIR/no-such-sguild.email
set REPORT_QRY_FILE $RUNDIR/no-such-sguild.reports
EOF
  printf 'sensor ANY\nclient ANY\n' >"$RUNDIR/sguild.access"
  : >"$RUNDIR/sguild.queries"
}

sguild_running() { pid_alive "$(read_pid "$SGPIDF")"; }

stop_sguild() {
  local pid; pid=$(read_pid "$SGPIDF")
  if pid_alive "$pid"; then
    # children forked by sguild (loaderd, queryd) - found by parent PID only
    local kids; kids=$(ps -o pid= --ppid "$pid" 2>/dev/null | tr -s ' \n' ' ' || true)
    log "stopping sguild pid $pid (children: ${kids:-none})"
    kill -TERM "$pid" 2>/dev/null || true
    local i; for i in $(seq 1 20); do pid_alive "$pid" || break; sleep 0.25; done
    pid_alive "$pid" && { log "sguild pid $pid still alive, SIGKILL"; kill -KILL "$pid" || true; }
    for k in $kids; do pid_alive "$k" && kill -TERM "$k" 2>/dev/null || true; done
    sleep 0.3
    for k in $kids; do pid_alive "$k" && kill -KILL "$k" 2>/dev/null || true; done
  fi
  rm -f "$SGPIDF"
}

port_listening() { ss -ltnH "sport = :$1" 2>/dev/null | grep -q .; }

start_sguild() {
  [ -n "${SGUIL_SRC:-}" ] || { log "SGUIL_SRC is not set"; exit 2; }
  [ -f "$SGUIL_SRC/server/sguild" ] || { log "no server/sguild under SGUIL_SRC=$SGUIL_SRC"; exit 2; }
  stop_sguild
  for p in "$SENSOR_PORT" "$CLIENT_PORT"; do
    if port_listening "$p"; then log "port $p is already in use by someone else"; exit 6; fi
  done
  make_certs
  write_sguild_conf
  log "starting sguild (sensor port $SENSOR_PORT, client port $CLIENT_PORT, log $SGLOG)"
  ( cd "$RUNDIR" && TZ=${SGUIL_TZ:-UTC} exec setsid tclsh "$SGUIL_SRC/server/sguild" \
        -c "$RUNDIR/sguild.conf" -A "$RUNDIR/sguild.access" -g "$RUNDIR/sguild.queries" \
        -C "$RUNDIR/certs" -L "$RUNDIR/logs" -P "$RUNDIR/sguild-internal.pid" \
        >>"$SGLOG" 2>&1 </dev/null ) &
  echo $! >"$SGPIDF"
  local pid; pid=$(read_pid "$SGPIDF")
  local i limit=$(( ${SGUIL_START_TIMEOUT:-180} * 4 ))
  for i in $(seq 1 "$limit"); do
    if ! pid_alive "$pid"; then log "sguild exited early; tail of $SGLOG:"; tail -30 "$SGLOG" >&2; exit 7; fi
    if port_listening "$SENSOR_PORT" && port_listening "$CLIENT_PORT"; then
      log "sguild up (pid $pid)"
      echo "SGUILD_HOST=127.0.0.1"
      echo "SGUILD_SENSOR_PORT=$SENSOR_PORT"
      echo "SGUILD_CLIENT_PORT=$CLIENT_PORT"
      echo "SGUILD_PID=$pid"
      echo "SGUILD_LOG=$SGLOG"
      echo "SGUILD_DB_PORT=$DB_PORT"
      echo "SGUILD_CERT=$RUNDIR/certs/cert.pem"
      return 0
    fi
    sleep 0.25
  done
  log "sguild (pid $pid) did not listen within ${SGUIL_START_TIMEOUT:-180}s; it is left running"
  log "(stop it with: $0 stop-sguild). Tail of $SGLOG:"; tail -5 "$SGLOG" >&2; exit 7
}

status() {
  if db_running; then echo "mariadb: running pid $(read_pid "$DBPIDF") 127.0.0.1:$DB_PORT"; else echo "mariadb: stopped"; fi
  if sguild_running; then echo "sguild: running pid $(read_pid "$SGPIDF") sensor 127.0.0.1:$SENSOR_PORT client 127.0.0.1:$CLIENT_PORT"; else echo "sguild: stopped"; fi
}

cmd=${1:-start}
case "$cmd" in
  start)
    [ -n "${SGUIL_SRC:-}" ] || { log "SGUIL_SRC is not set"; exit 2; }
    need_tools
    mkdir -p "$STATE"
    stop_sguild
    stop_db          # always restart MariaDB so my.cnf changes take effect
    start_db
    fresh_db
    : >"$SGLOG"
    start_sguild
    ;;
  restart-sguild) need_tools; start_db; start_sguild ;;
  stop-sguild) stop_sguild ;;
  stop-db) stop_db ;;
  start-db) start_db ;;
  stop) stop_sguild; stop_db; status ;;
  status) status ;;
  clean) stop_sguild; stop_db; rm -rf -- "$STATE"; log "removed $STATE" ;;
  env)
    echo "SGUIL_STATE=$STATE"; echo "SGUILD_SENSOR_PORT=$SENSOR_PORT"; echo "SGUILD_CLIENT_PORT=$CLIENT_PORT"
    echo "SGUIL_DB_PORT=$DB_PORT"; echo "SGUIL_DB_SOCK=$DBSOCK"; echo "SGUIL_MYCNF=$MYCNF"
    echo "SGUIL_DB_USER=$DB_USER"; echo "SGUIL_DB_PASS=$DB_PASS"; echo "SGUILD_LOG=$SGLOG" ;;
  *) echo "usage: $0 [start|stop|status|restart-sguild|stop-sguild|start-db|stop-db|env|clean]" >&2; exit 2 ;;
esac
