#!/usr/bin/env bash
# Wall time of `openshell sandbox list` against an idle reference gateway, as a user waits for it:
# from the CLI process's start until it has exited. Prints min/median/p90/max over N runs.
#
#   ci/list-latency.sh [N] [BIN_DIR]      (N=50, BIN_DIR=target/x86_64-unknown-linux-gnu/debug)
#
# The gateway runs on the process driver (needs root) with a throwaway state directory, on
# 127.0.0.1 with a port the kernel picks; it is stopped on exit. No sandbox is created: `list`
# of an empty store is the smallest round trip the CLI makes, so what it shows is connection and
# transport cost (issue 13: the 40 ms delayed-ACK stall).
set -euo pipefail
runs=${1:-50}
bin=${2:-target/x86_64-unknown-linux-gnu/debug}
state=$(mktemp -d)
# The gateway's first stdout line names its address: read it (bounded), never guess a delay.
coproc GW { RUST_BACKTRACE=0 exec "$bin/openshell-gateway" --driver process --listen 127.0.0.1:0 \
    --state-dir "$state" --busybox /bin/busybox 2>"$state/gateway.err"; }
gw=$GW_PID
trap 'kill "$gw" 2>/dev/null; wait "$gw" 2>/dev/null; rm -rf "$state"' EXIT
if ! read -rt 10 line <&"${GW[0]}" || [[ $line != "openshell-gateway listening on "* ]]; then
    echo "gateway did not start:" >&2; tail -5 "$state/gateway.err" >&2; exit 1
fi
addr=${line#openshell-gateway listening on }
url="http://$addr"
"$bin/openshell" --gateway "$url" sandbox list >/dev/null # warm-up: page cache, first connect
times=()
for _ in $(seq "$runs"); do
    start=$EPOCHREALTIME
    "$bin/openshell" --gateway "$url" sandbox list >/dev/null
    end=$EPOCHREALTIME
    times+=("$start $end")
done
printf '%s\n' "${times[@]}" | awk '{ printf "%.3f\n", ($2 - $1) * 1000 }' | sort -n |
    tee "$state/sorted" | awk -v n="$runs" '
    { t[NR] = $1 }
    END {
        printf "runs %d  min %.1f ms  median %.1f ms  p90 %.1f ms  max %.1f ms\n",
            n, t[1], t[int((n + 1) / 2)], t[int(0.9 * n + 0.999)], t[n]
        slow = 0; for (i = 1; i <= n; i++) if (t[i] >= 30) slow++
        printf "runs at or above 30 ms: %d of %d\n", slow, n
    }'
