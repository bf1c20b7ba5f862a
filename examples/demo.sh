#!/bin/sh
# The README's demo: drain a queue made of the bundled example events, with OUTPUT
# stdout instead of sguild, and print one JSON line per Sguil event (every field decoded).
# Nothing outside a temporary directory is touched.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/queue"
n=0
for f in "$here"/events/*; do
    n=$((n + 1))
    cp "$f" "$work/queue/modsec.log.1790000000.$(printf %06d "$n")"
done
cat > "$work/demo.conf" <<CONF
set EVENT_DIR $work/queue
set OUTPUT stdout
set HOSTNAME demo-websrv
CONF
cargo run --quiet --release -p modsec-shipper -- drain -c "$work/demo.conf"
