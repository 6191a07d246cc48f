#!/usr/bin/env bash
# The README's first command as a new user runs it: `make run` in this checkout, relative paths and all.
# Waits for a stream.url line per channel, decodes 3 s of each with ffprobe over the URL printed, stops pearl2d
# with SIGTERM and checks that make exits 0 within 10 s. Prints one "Passed|Failed Pearl2.CI.MakeRun" line for .ci/run.
set -uo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
fail() { echo "make run check: $*"; echo "--- make run output (last 40 lines) ---"; tail -40 "$log"; echo "  Failed Pearl2.CI.MakeRun"; cleanup; exit 1; }
cleanup() { [ -n "${make_pid:-}" ] && kill -TERM -- "-$make_pid" 2>/dev/null; sleep 1; [ -n "${make_pid:-}" ] && kill -KILL -- "-$make_pid" 2>/dev/null; rm -f "$log"; }
command -v ffprobe >/dev/null || fail "ffprobe is missing (make deps-test installs it)"

# Its own process group, stdin from nowhere (no terminal keys), as CI runs it. Discovery stays silent: CI's network is not
# ours to announce on (the discovery tests run it in network namespaces of their own).
PEARL2_DISCOVERY=off setsid make run </dev/null >"$log" 2>&1 &
make_pid=$!
for _ in $(seq 1 600); do   # publishing on a fresh clone takes a minute or two
	[ "$(grep -c 'stream.url channel=' "$log")" -ge 2 ] && break
	kill -0 "$make_pid" 2>/dev/null || fail "make run exited before printing its stream URLs"
	sleep 1
done
[ "$(grep -c 'stream.url channel=' "$log")" -ge 2 ] || fail "no stream.url lines after 10 min"
grep 'stream.url' "$log" | cut -c1-220

for url in $(grep -o 'stream.url channel=[0-9]* .* rtsp=[^ ]*' "$log" | sed 's/.* rtsp=//'); do
	frames=$(ffprobe -v error -rtsp_transport tcp -count_frames -read_intervals %+3 -select_streams v -show_entries stream=nb_read_frames -of csv=p=0 "$url" 2>&1 | grep -E "^[0-9]+$" | head -1)
	echo "ffprobe $url: $frames frames in 3 s"
	[[ "$frames" =~ ^[0-9]+$ ]] && [ "$frames" -ge 60 ] || fail "ffprobe decoded '$frames' from $url"
done
for url in $(grep -o 'stream.url channel=[0-9]* .* ts=[^ ]*' "$log" | sed 's/.* ts=//'); do
	frames=$(ffprobe -v error -count_frames -read_intervals %+3 -select_streams v -show_entries stream=nb_read_frames -of csv=p=0 "$url" 2>&1 | grep -E "^[0-9]+$" | head -1)
	echo "ffprobe $url: $frames frames in 3 s"
	[[ "$frames" =~ ^[0-9]+$ ]] && [ "$frames" -ge 60 ] || fail "ffprobe decoded '$frames' from $url"
done

pid=$(pgrep -g "$make_pid" -x pearl2d) || fail "no pearl2d process under make run"
start=$(date +%s%N)
kill -TERM "$pid"
for _ in $(seq 1 100); do kill -0 "$make_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$make_pid" 2>/dev/null && fail "make run still running 10 s after SIGTERM to pearl2d"
wait "$make_pid"; rc=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "make run stopped in $ms ms with exit $rc"
[ "$rc" -eq 0 ] || fail "make run exited $rc after SIGTERM"
grep -q 'pearl2d.stopped' "$log" || fail "pearl2d did not log pearl2d.stopped"
make_pid=""
rm -f "$log"
echo "  Passed Pearl2.CI.MakeRun"
