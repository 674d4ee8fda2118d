#!/usr/bin/env bash
# Fuzzes every parser that takes bytes from outside (fuzz/fuzz_targets: Money, Quantity, ids,
# the sandbox and Stripe webhook verifiers, the orders API body) for a bounded time each, with
# libFuzzer through cargo-fuzz. The properties they check are in fuzz/src/.
#
#   scripts/fuzz.sh                       # every target, 10 s each (what CI runs)
#   scripts/fuzz.sh 120                   # every target, 120 s each
#   scripts/fuzz.sh 60 stripe_webhook     # some targets
#
# Prints the executions per target and exits non-zero if any target crashed: a panic (a broken
# property), one input running over FUZZ_TIMEOUT_SECS (a hang) or over the memory limit. The
# input is left in fuzz/artifacts/<target>/ — replay it with
# `fuzz/target/<host triple>/release/<target> <file>` (or `cargo fuzz run -s none <target> <file>`
# in fuzz/ with RUSTC_BOOTSTRAP=1).
#
# Only the stable toolchain is needed: cargo-fuzz passes a few nightly-only flags, which
# RUSTC_BOOTSTRAP=1 unlocks. cargo-fuzz itself is installed into cargo's bin directory on first
# use. The first build of the targets takes several minutes (release build of the workspace's
# dependencies, in fuzz/target); later runs reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-10}
shift || true
case "$seconds" in
  '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [seconds-per-target] [target...]" >&2; exit 2 ;;
esac
CARGO_FUZZ_VERSION=0.13.2
# Safe Rust: AddressSanitizer finds little the borrow checker has not, at half the speed.
# FUZZ_SANITIZER=address to use it anyway (a separate build).
sanitizer=${FUZZ_SANITIZER:-none}
timeout_secs=${FUZZ_TIMEOUT_SECS:-10}
export RUSTC_BOOTSTRAP=1
# The fuzz workspace builds into fuzz/target, where the targets are run from below.
unset CARGO_TARGET_DIR
started=$(date +%s)

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  echo "==> installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install --locked --quiet cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cd fuzz && cargo fuzz list)
  [ "${#targets[@]}" -gt 0 ] || { echo "error: cargo fuzz list found no targets" >&2; exit 1; }
fi

echo "==> building ${#targets[@]} fuzz targets (sanitizer: $sanitizer)"
build_start=$(date +%s)
# pipefail: the status is cargo's; the filter only hides the progress lines.
(cd fuzz && cargo fuzz build --sanitizer "$sanitizer" 2>&1 | { grep -v '^ *Compiling ' || true; })
echo "==> built in $(( $(date +%s) - build_start ))s"

root=$(pwd)
# Every target runs from this one build (not `cargo fuzz run`, which would rebuild before each).
bin_dir="$root/fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release"
logs="$root/fuzz/artifacts/logs"
mkdir -p "$logs"
failed=()
# wall s: the target's whole run, libFuzzer's start-up and corpus loading included.
summary=$(printf '%-16s %12s %9s %7s %7s %7s  %s' target executions exec/s "wall s" corpus "rss MB" result)
for target in "${targets[@]}"; do
  corpus="$root/fuzz/corpus/$target"
  seeds="$root/fuzz/seeds/$target"
  mkdir -p "$corpus" "$seeds" "$root/fuzz/artifacts/$target"
  log="$logs/$target.log"
  echo "==> $target for ${seconds}s"
  start=$(date +%s)
  status=0
  "$bin_dir/$target" -artifact_prefix="$root/fuzz/artifacts/$target/" \
    -max_total_time="$seconds" -timeout="$timeout_secs" -rss_limit_mb=2048 \
    -print_final_stats=1 -close_fd_mask=1 "$corpus" "$seeds" >"$log" 2>&1 || status=$?
  elapsed=$(( $(date +%s) - start ))
  stat() { awk -v k="stat::$1:" '$1 == k { print $2 }' "$log" | tail -1; }
  execs=$(stat number_of_executed_units)
  rate=$(stat average_exec_per_sec)
  rss=$(stat peak_rss_mb)
  files=$(find "$corpus" -type f | wc -l)
  if [ "$status" -eq 0 ]; then
    result=ok
  else
    result="FAILED (exit $status)"
    failed+=("$target")
    echo "---- $target: what failed (whole log: $log)" >&2
    # The panic (a property's message) or libFuzzer's verdict, and where the input was written.
    awk '/panicked at|ERROR: libFuzzer|==ERROR/ { shown = 1 } shown && n++ < 12' "$log" >&2
    grep -E 'Test unit written to|^Base64:' "$log" >&2 || true
  fi
  summary+=$'\n'$(printf '%-16s %12s %9s %7s %7s %7s  %s' "$target" "${execs:-?}" "${rate:-?}" \
    "$elapsed" "$files" "${rss:-?}" "$result")
done

echo "==> fuzzing summary (${seconds}s per target, $(( $(date +%s) - started ))s in all; logs in fuzz/artifacts/logs)"
echo "$summary"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]}; inputs in fuzz/artifacts/<target>/" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, no crash"
