#!/usr/bin/env bash
# The harness's own cost per streamed request (README, "The harness's cost, measured"):
#   a twin vLLM in its own process pinned to core 1 (TTFT 50 ms, 2 ms per token, 64-token
#   /v1/completions streams), the harness pinned to core 0 with one tokio worker, a constant
#   rate for SECONDS at each rate. Per rate it prints the harness process's whole CPU (user +
#   sys, from start to exit) per request and its split, its busiest thread's busy share, send lateness p99,
#   the achieved rate, peak RSS and the verdict; then the fixed cost of a run and the cost per
#   request at the margin. The fixed cost is measured, not extrapolated: the first rate (1 req/s
#   by default) is a run that sends almost nothing for as long (the probe, the CPU sampler, the
#   pacer, start and report), and each rate's margin is its CPU above that run per request
#   above it. A least-squares line and the margins between neighbouring rates follow.
# Usage: scripts/cpu-per-request.sh [SECONDS=15] [RATES="1 100 1000 2000 4000"]
#   HARNESS_BIN=path: measure that harness binary (another build, for a before/after on one
#   host) against this build's twin; TWIN_BIN=path: serve from that build's twin instead;
#   OUT=dir: where the runs go (default target/cpu-per-request).
# Needs: Linux, 2+ cores, taskset, /usr/bin/time, python3. Traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-15}
rates=${2:-1 100 1000 2000 4000}
port=${CPU_BENCH_PORT:-8913}
out=${OUT:-target/cpu-per-request}
cargo build --release --quiet
rm -rf "$out" && mkdir -p "$out"
# Copies: a rebuild during the measurement must not change the binaries under it.
cp "${TWIN_BIN:-target/release/duo-harness}" "$out/twin"
cp "${HARNESS_BIN:-target/release/duo-harness}" "$out/duo-harness"
bin=$out/duo-harness
cat >"$out/stack.toml" <<TOML
[aigw]
port = 0
[[backend]]
name = "vllm-code"
models = ["codestral-22b"]
port = $port
ttft_ms = 50
itl_ms = 2
TOML
python3 - "$out/corpus.jsonl" <<'PY'
import json, sys
src = "fixtures/corpus/openai-bench.jsonl"
with open(src) as f, open(sys.argv[1], "w") as out:
    for line in f:
        v = json.loads(line)
        v["request"]["body"]["max_tokens"] = 64
        out.write(json.dumps(v) + "\n")
PY
cat >"$out/scenario.toml" <<TOML
name = "cpu-per-request"
corpus = "corpus.jsonl"
features = ["code_completions"]
request_timeout_s = 10
[target]
url = "http://127.0.0.1:$port"
[output]
dir = "reports"
chunks = false
[load]
arrival = "constant"
rate = 100
duration_s = $seconds
warmup_s = 1
grace_s = 5
seed = 1
TOML
taskset -c 1 "$out/twin" stack --config "$out/stack.toml" >"$out/stack.json" 2>"$out/stack.log" &
stack=$!
trap 'kill $stack 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    sleep 0.1
done
for rate in $rates; do
    # One unmeasured second first, so every measured run meets an equally warm server.
    TOKIO_WORKER_THREADS=1 taskset -c 0 "$bin" run "$out/scenario.toml" --rate "$rate" \
        --duration 1 --out "$out/warm-$rate" >/dev/null 2>&1 || true
    TOKIO_WORKER_THREADS=1 /usr/bin/time -f "%U %S %M" -o "$out/time-$rate" \
        taskset -c 0 "$bin" run "$out/scenario.toml" --rate "$rate" --out "$out/r$rate" \
        >"$out/r$rate.log" 2>&1 || true
done
python3 - "$out" $rates <<'PY'
import json, sys
out, rates = sys.argv[1], [int(r) for r in sys.argv[2:]]
rows = []
# The twin's TTFT and ITL p50 say whether the server kept its pace (50 ms, 2 ms): a twin that
# lags merges tokens into fewer writes, which the harness then reads in fewer wake-ups.
# user and sys split ms/req: sys is the kernel's share (a recv per token and the ACK it sends,
# which on loopback includes the server's own TCP stack taking that ACK in); the harness's code
# moves it only by making fewer syscalls.
print(f"{'rate':>6} {'sent':>7} {'achieved':>9} {'cpu s':>7} {'ms/req':>7} {'user':>6} {'sys':>6} {'busy':>6} {'late p99':>9} {'rss MB':>7} {'ttft p50':>9} {'itl p50':>8}  verdict")
for r in rates:
    user, sys_, rss_kb = open(f"{out}/time-{r}").read().split()[-3:]
    cpu = float(user) + float(sys_)
    s = json.load(open(f"{out}/r{r}/summary.json"))
    load = s["load"]
    sent = load["sent"]
    busy = (load["client"].get("busiest_thread") or {}).get("busy")
    late = load["send_lateness_ms"]["p99"]
    rows.append((sent, cpu))
    lat = s["features"]["code_completions"]["latency_ms"]
    p50 = lambda k: (lat.get(k) or {}).get("p50") or float("nan")
    print(f"{r:>6} {sent:>7} {load['achieved_rps'] or 0:>9.1f} {cpu:>7.2f} {1000 * cpu / max(sent, 1):>7.3f} "
          f"{1000 * float(user) / max(sent, 1):>6.3f} {1000 * float(sys_) / max(sent, 1):>6.3f} "
          f"{(busy or 0) * 100:>5.0f}% {late if late is not None else float('nan'):>9.3f} {int(rss_kb) / 1024:>7.1f} "
          f"{p50('ttft'):>9.1f} {p50('itl'):>8.2f}  {s['verdict']}")
n = len(rows)
if n >= 2 and rates[0] <= 1:
    (x0, y0) = rows[0]
    print(f"fixed cost of a run (measured: {rates[0]} req/s for as long): {y0:.2f} s of CPU")
    for (x, y), r in zip(rows[1:], rates[1:]):
        if x != x0:
            print(f"margin at {r} req/s over that run: {1000 * (y - y0) / (x - x0):.3f} ms of CPU per request")
if n >= 2:
    mx = sum(x for x, _ in rows) / n
    my = sum(y for _, y in rows) / n
    sxx = sum((x - mx) ** 2 for x, _ in rows)
    slope = sum((x - mx) * (y - my) for x, y in rows) / sxx if sxx else float("nan")
    fixed = my - slope * mx
    print(f"fit over all rates: fixed cost of a run {fixed:.2f} s of CPU; at the margin {slope * 1000:.3f} ms of CPU per request")
    # Per request the cost falls as the rate rises (more chunks arrive per wake-up), so one
    # straight line over every rate is crude: the margin between neighbouring rates says more.
    for (x0, y0), (x1, y1), r0, r1 in zip(rows, rows[1:], rates, rates[1:]):
        if x1 != x0:
            print(f"margin {r0}->{r1} req/s: {1000 * (y1 - y0) / (x1 - x0):.3f} ms of CPU per request")
PY
