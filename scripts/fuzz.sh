#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 60 s each) and prints the executions reached.
# Needs cargo-fuzz (`cargo install cargo-fuzz`). cargo-fuzz wants a nightly compiler for its
# sanitizer flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them.
set -euo pipefail
secs=${1:-60}
cd "$(dirname "$0")/../fuzz"
for t in decode_raw_text decode_v4_sse decode_chat_ndjson decode_openai_sse openai_chunk corpus_line; do
  mkdir -p "corpus/$t"
  log=$(RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -timeout=5 -rss_limit_mb=2048 2>&1) || {
    echo "$log" | tail -30
    echo "FAIL $t"
    exit 1
  }
  echo "$t: $(echo "$log" | grep -E '^#[0-9]+.*DONE' | tail -1)"
done
