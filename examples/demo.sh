#!/bin/sh
# The README's demo: the whole pipeline on the bundled example, no server needed.
# index.log (what ModSecurity pipes to the collector) -> modsec-collector -> a temporary
# queue -> modsec-shipper drain with OUTPUT text, which prints one line per Sguil event
# (time, client -> server, priority, message) instead of sending it to sguild.
#   sh examples/demo.sh          one line per event
#   sh examples/demo.sh --json   the same events as JSON lines (OUTPUT stdout), every
#                                field decoded, the detail included
# Logs go to stderr. Nothing outside a temporary directory is touched.
set -eu
case "${1:-}" in
    "") output=text ;;
    --json) output=stdout ;;
    *) echo "usage: sh examples/demo.sh [--json]" >&2; exit 2 ;;
esac
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
set OUTPUT $output
set HOSTNAME demo-websrv
CONF
cd "$here/.."
cargo build --quiet --release -p modsec-collector -p modsec-shipper
bin=$(cargo metadata --format-version 1 --no-deps | sed 's/.*"target_directory":"\([^"]*\)".*/\1/')/release
# As Apache would run it: index lines on stdin; the index is kept in $work/index.log.
"$bin/modsec-collector" -c "$work/demo.conf" "$work/audit" "$work/index.log" < "$work/index.in"
"$bin/modsec-shipper" drain -c "$work/demo.conf"
if [ "$output" = text ]; then
    cat <<EOF

Each line is one event as sguild would store it. To see more:
  the full Sguil event, every field (JSON):  sh examples/demo.sh --json
  the HTML detail of the last one:           $bin/modsec-shipper show --detail examples/events/native-3.0-sqli-blocked
  (the other bundled events: examples/events/; --detail=text for plain text)
EOF
fi
