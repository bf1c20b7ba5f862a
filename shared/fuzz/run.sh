#!/bin/sh
# Runs the libFuzzer targets, each seeded from the fixtures, for SECONDS each (default 600).
#   shared/fuzz/run.sh [SECONDS] [TARGET...]
# Needs cargo-fuzz (`cargo install cargo-fuzz`); RUSTC_BOOTSTRAP=1 lets the stable
# toolchain build with the sanitizer flags. Corpora grow in shared/fuzz/corpus/<target>
# (not committed), crashes land in shared/fuzz/artifacts/<target>. Prints, per target,
# libFuzzer's last status line (executions, coverage, corpus) and the crashes found.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
fixtures=$root/tests/fixtures
seconds=${1:-600}
[ $# -gt 0 ] && shift
targets=${*:-index_line event_native event_json event_v3 config sguil_lines detail_html}
export RUSTC_BOOTSTRAP=1
cd "$here"

seed() { # seed TARGET: fill corpus/TARGET from the fixtures (once)
    dir=corpus/$1
    [ -d "$dir" ] && return 0
    mkdir -p "$dir"
    n=0
    case $1 in
    index_line)
        for f in "$fixtures"/modsec-*/index-*.log; do
            while IFS= read -r line; do
                n=$((n + 1)); printf '%s\n' "$line" > "$dir/line-$n"
            done < "$f"
        done ;;
    event_native)
        find "$fixtures/modsec-2.9/native" "$fixtures/modsec-2.9/native-on" -type f | while read -r f; do
            cp "$f" "$dir/"; done ;;
    event_json)
        find "$fixtures/modsec-2.9/json" "$fixtures/modsec-2.9/json-on" -type f | while read -r f; do
            cp "$f" "$dir/"; done ;;
    event_v3)
        find "$fixtures/modsec-3/native" "$fixtures/modsec-3/json" -type f | while read -r f; do
            cp "$f" "$dir/$(basename "$(dirname "$f")")-$(basename "$f")"; done ;;
    config)
        cp "$root/examples/modsec2sguil.conf" "$dir/" ;;
    detail_html) # URI, User-Agent, body, rule msg, raw event, split at 0xfe
        printf '/x?q=<a href="y">&lt;\376<!--\376a=&amp;\000\377\376m</pre>\376raw &quot;' > "$dir/hostile" ;;
    sguil_lines)
        printf 'AgentInfo {web 1} modsecurity webfarm 3 41' > "$dir/agentinfo"
        printf "Failed {mysqlexec/db server: Duplicate entry '1-5' for key 'PRIMARY'}" > "$dir/dup"
        printf 'SidCidResponse 3 41' > "$dir/sidcid"
        printf "Failed to insert 7: mysqlexec/db server: Duplicate entry '3-7' for key 'PRIMARY'" > "$dir/by-dup"
        printf 'ConfirmEvent 7\r\n' > "$dir/confirm" ;;
    esac
}

failed=""
for t in $targets; do
    seed "$t"
    mkdir -p "artifacts/$t"
    log=$(mktemp)
    status=0
    # -rss_limit_mb: a memory blow-up is a finding; -timeout: so is a hang.
    cargo fuzz run --fuzz-dir "$here" -O "$t" "corpus/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
        -artifact_prefix="artifacts/$t/" -print_final_stats=1 > "$log" 2>&1 || status=$?
    echo "== $t: exit $status"
    grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE)' "$log" | tail -1
    grep -E 'stat::number_of_executed_units|stat::peak_rss_mb|^Done' "$log" || true
    ls "artifacts/$t" | sed 's/^/   crash: /'
    if [ "$status" != 0 ]; then tail -40 "$log"; failed="$failed $t"; fi
    rm -f "$log"
done
if [ -n "$failed" ]; then
    echo "fuzzing found problems in:$failed" >&2
    exit 1
fi
