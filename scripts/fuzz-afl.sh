#!/usr/bin/env bash
# Coverage-guided fuzzing of each parser with AFL++ and SharpFuzz: SECONDS_PER_TARGET each.
# usage: scripts/fuzz-afl.sh SECONDS_PER_TARGET [TARGET ...]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}; shift || true
targets=${*:-"rtsp-request transport session range sdp tunnel-base64 authorization h264 rtp http-request ext4-superblock dns ssdp soap"}
export PATH="$PATH:$HOME/.dotnet/tools"
command -v sharpfuzz >/dev/null || dotnet tool install --global SharpFuzz.CommandLine --version 2.3.0
bin=out/fuzz/afl-bin
rm -rf "$bin" && mkdir -p "$bin"
dotnet publish tests/Pearl2.Fuzz/Pearl2.Fuzz.csproj -c Release -o "$bin" >/dev/null
sharpfuzz "$bin/Pearl2.Formats.dll" >/dev/null   # instrument only our parsers
export AFL_SKIP_BIN_CHECK=1 AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1
status=0
for t in $targets; do
  out=out/fuzz/afl/$t
  rm -rf "$out"; mkdir -p out/fuzz/afl
  timeout --signal=INT $((secs + 30)) afl-fuzz -V "$secs" -i tests/Pearl2.Fuzz/corpus/$t -o "$out" -t 5000 -m none -- dotnet "$bin/pearl2-fuzz.dll" afl "$t" >"$out.log" 2>&1 || true
  stats=$out/default/fuzzer_stats
  if [ ! -f "$stats" ]; then echo "afl target=$t did not run: see $out.log"; status=1; continue; fi
  execs=$(awk -F: '/^execs_done/ {gsub(/ /,"",$2); print $2}' "$stats")
  crashes=$(awk -F: '/^saved_crashes/ {gsub(/ /,"",$2); print $2}' "$stats")
  hangs=$(awk -F: '/^saved_hangs/ {gsub(/ /,"",$2); print $2}' "$stats")
  paths=$(awk -F: '/^corpus_count/ {gsub(/ /,"",$2); print $2}' "$stats")
  echo "afl target=$t seconds=$secs execs=$execs corpus=$paths crashes=$crashes hangs=$hangs"
  if [ "${crashes:-0}" != 0 ] || [ "${hangs:-0}" != 0 ]; then
    mkdir -p tests/Pearl2.Fuzz/corpus/$t
    cp "$out"/default/crashes/id:* "$out"/default/hangs/id:* tests/Pearl2.Fuzz/corpus/$t/ 2>/dev/null || true
    echo "  copied into tests/Pearl2.Fuzz/corpus/$t: they are regression tests now"
    status=1
  fi
done
exit $status
