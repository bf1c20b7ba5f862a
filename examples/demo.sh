#!/bin/sh
# The README's demo: the whole pipeline on the bundled example, no server needed.
# index.log (what ModSecurity pipes to the collector) -> modsec-collector -> a temporary
# queue -> modsec-shipper drain with OUTPUT stdout, which prints one JSON line per Sguil
# event (every field decoded) instead of sending it to sguild. Logs go to stderr.
# Nothing outside a temporary directory is touched.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The storage dir: the example event files, where the index lines say they are.
cp -R "$here/events" "$work/audit"
# As the web server would own them: the collector queues no event file owned by root.
if [ "$(id -u)" = 0 ]; then chown -R nobody "$work/audit"; fi
# libmodsecurity 3 writes absolute paths: point its line at this storage dir.
sed "s#@STORAGE@#$work/audit#" "$here/index.log" > "$work/index.in"
cat > "$work/demo.conf" <<CONF
set EVENT_DIR $work/queue
set STORAGE_DIR $work/audit
set STATE_DIR $work/state
set OUTPUT stdout
set HOSTNAME demo-websrv
CONF
cd "$here/.."
cargo build --quiet --release -p modsec-collector -p modsec-shipper
bin=$(cargo metadata --format-version 1 --no-deps | sed 's/.*"target_directory":"\([^"]*\)".*/\1/')/release
# As Apache would run it: index lines on stdin; the index is kept in $work/index.log.
"$bin/modsec-collector" -c "$work/demo.conf" "$work/audit" "$work/index.log" < "$work/index.in"
"$bin/modsec-shipper" drain -c "$work/demo.conf"
