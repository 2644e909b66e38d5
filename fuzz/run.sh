#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 60 s each) with cargo-fuzz (libFuzzer),
# seeded from the project's fixtures. A crash stops the run; its input is in
# fuzz/artifacts/TARGET/: copy it to fuzz/regressions/TARGET/ so that
# `cargo test --test fuzz_regressions` keeps it as a regression test.
#
# Usage: fuzz/run.sh [SECONDS] [TARGET...]
# A campaign: fuzz/run.sh 3600 dns (an hour per target, one core each; run two targets at
# once on two cores), which also minimises the corpus at the end.
# Needs cargo-fuzz (`cargo install cargo-fuzz`); on a stable toolchain the sanitizer flags
# are enabled with RUSTC_BOOTSTRAP=1, as here.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(frame dns tls quic http rules_yaml config engine audit_line)
command -v cargo-fuzz >/dev/null || { echo "needs cargo-fuzz: cargo install cargo-fuzz" >&2; exit 2; }
export RUSTC_BOOTSTRAP=1
# The seeds come from the checked build that the test run made already.
cargo run --profile checked --quiet --example fuzz_seeds -- fuzz/corpus
for target in "${targets[@]}"; do
  echo "== $target: ${seconds} s"
  rm -rf "fuzz/artifacts/$target"
  mkdir -p "fuzz/corpus/$target" fuzz/artifacts
  # -rss_limit_mb: an input that makes a parser allocate without bound fails the run.
  log="fuzz/artifacts/$target.log"
  status=0
  cargo fuzz run --release --sanitizer address "$target" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=1024 -malloc_limit_mb=256 -timeout=10 -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  grep -E "^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+== ?ERROR|SUMMARY|artifact_prefix|Test unit written)" "$log" || true
  if compgen -G "fuzz/artifacts/$target/*" >/dev/null; then
    echo "$target: found a failing input in fuzz/artifacts/$target (whole output: $log)" >&2
    exit 1
  fi
  # A run that ends without its final statistics did not fuzz (a build that failed, a
  # fuzzer that could not start): that is a failure too, never a quiet pass.
  if [ "$status" -ne 0 ] || ! grep -qE "^#[0-9]+[[:space:]]+DONE" "$log"; then
    echo "$target: cargo fuzz exited with status $status without finishing; the end of $log:" >&2
    tail -n 30 "$log" >&2
    exit 1
  fi
  # A campaign (10 minutes or more) ends with its corpus minimised: the smallest set of
  # inputs that reaches the same coverage, to seed the next one.
  if [ "$seconds" -ge 600 ]; then
    before=$(find "fuzz/corpus/$target" -type f | wc -l)
    cargo fuzz cmin --release --sanitizer address "$target" "fuzz/corpus/$target" >/dev/null 2>&1 || true
    echo "$target: corpus minimised from $before to $(find "fuzz/corpus/$target" -type f | wc -l) inputs"
  fi
done
echo "all targets ran ${seconds} s each without a crash"
