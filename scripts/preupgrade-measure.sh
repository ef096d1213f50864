#!/usr/bin/env bash
# Measures the pre-upgrade job's go/no-go (README, "The pre-upgrade run, measured"), as the
# README's walkthrough runs it, against `duo-harness stack` processes standing in for the
# gateway and its backends:
#   1. the first run (--first-run) stores the baseline, its snapshots are accepted, the noise
#      floor is calibrated;
#   2. RUNS times: the stack is restarted, unchanged, and the pre-upgrade run judges it (go: 0);
#   3. RUNS times: the stack is restarted with its chat backend 25 % slower (TTFT 20 -> 25 ms,
#      inter-token 4 -> 5 ms), and judged (no-go: 1, naming chat features and no code feature).
# Usage: scripts/preupgrade-measure.sh [RUNS=10] [RPS=40]   (about 40 s per run on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
rps=${2:-40}
out=$PWD/target/preupgrade-measure
cargo build --quiet
rm -rf "$out" && mkdir -p "$out"
cp target/debug/duo-harness "$out/duo-harness" # a rebuild must not change the binary under it
bin=$out/duo-harness
stack_pid=
start_stack() { # [config]
    [ -n "$stack_pid" ] && kill "$stack_pid" 2>/dev/null && wait "$stack_pid" 2>/dev/null || true
    "$bin" stack ${1:+--config "$1"} >"$out/stack.json" 2>/dev/null &
    stack_pid=$!
    for _ in $(seq 1 100); do [ -s "$out/stack.json" ] && break; sleep 0.1; done
    url() { python3 -c "import json,sys;d=json.load(open('$out/stack.json'));print(eval(sys.argv[1]))" "$1"; }
    export DUO_AIGW_URL=$(url "d['aigw']")
    export DUO_CODE_BACKEND_URL=$(url "d['backends']['vllm-code']['openai_base']")
    export DUO_CHAT_BACKEND_URL=$(url "d['backends']['vllm-chat']['openai_base']")
}
trap '[ -n "$stack_pid" ] && kill "$stack_pid" 2>/dev/null' EXIT
export DUO_AIGW_AUTH=bypass DUO_CODE_MODEL=codestral-22b DUO_CHAT_MODEL=mistral-7b-instruct
export DUO_BASELINE_DIR=$out/baseline DUO_PEAK_RPS=$rps DUO_PREUPGRADE_S=20 DUO_PREUPGRADE_MAX_S=30
run() { # name [args...]
    local name=$1 code=0; shift
    "$bin" run scenarios/preupgrade.toml --out "$out/$name" "$@" >"$out/$name.log" 2>&1 || code=$?
    local regressed
    regressed=$(python3 -c "
import json
s = json.load(open('$out/$name/summary.json'))
print(','.join(sorted({f['feature'] or '-' for f in s['findings'] if f['kind'] == 'regression'})) or '-')")
    echo "$name $code $regressed" | tee -a "$out/outcomes.txt"
}
start_stack
run first --first-run
"$bin" snapshots accept --dir "$DUO_BASELINE_DIR/snapshots" >/dev/null
run calibrate --calibrate
for i in $(seq 1 "$runs"); do start_stack; run "same$i"; done
cat >"$out/slow.toml" <<TOML
[[backend]]
name = "vllm-code"
models = ["codestral-22b"]

[[backend]]
name = "vllm-chat"
models = ["mistral-7b-instruct"]
ttft_ms = 25
itl_ms = 5
TOML
for i in $(seq 1 "$runs"); do start_stack "$out/slow.toml"; run "slow$i"; done
python3 - "$out/outcomes.txt" <<'PY' | tee "$out/summary.txt"
import sys
rows = [l.split() for l in open(sys.argv[1])]
code = {"codes_completions", "code_completions", "code_generations"}
same = [r for r in rows if r[0].startswith("same")]
slow = [r for r in rows if r[0].startswith("slow")]
count = lambda rs, c: sum(1 for r in rs if r[1] == c)
caught = sum(1 for r in slow if r[1] == "1" and r[2] != "-" and not (set(r[2].split(",")) & code))
print(f"unchanged, restarted: {len(same)} runs: exit 0 {count(same,'0')}, 1 {count(same,'1')}, 4 {count(same,'4')}")
print(f"chat 25 % slower:     {len(slow)} runs: exit 0 {count(slow,'0')}, 1 {count(slow,'1')}, 4 {count(slow,'4')}; caught on chat features only: {caught}")
PY
