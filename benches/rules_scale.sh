#!/usr/bin/env bash
# Import and compile cost of large blocklists: `telestrip rules import` and `telestrip rules
# check` on 100,000 and 1,000,000-entry lists in each import format, and as a list file
# (`--list-files`), with wall time and peak resident memory (GNU time). Lists are built from
# the real blocklists in ../shared/data/large when present (repeated with numbered first
# labels, n1-NAME, to reach the size), else synthetic names.
#
# Usage: benches/rules_scale.sh [SIZE...]     (default: 100000 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("${@:-100000 1000000}")
[ $# -eq 0 ] && sizes=(100000 1000000)
cargo build --release --quiet
bin=target/release/telestrip
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
command -v /usr/bin/time >/dev/null || { echo "needs GNU time (apt-get install time)" >&2; exit 1; }

base="$work/base.txt"
real=../shared/data/large/stevenblack_unified_domains_via_hagezi_2022-07-24.txt
if [ -f "$real" ]; then
  grep -v '^#' "$real" | grep '\.' >"$base"
  echo "names from $(basename "$real") ($(wc -l <"$base") distinct names)"
else
  seq 1 150000 | sed 's/^/tracker-/; s/$/.example.com/' >"$base"
  echo "synthetic names (../shared/data/large not found)"
fi

# SIZE lines of names: the base list, then the base list under n1., n2., ... labels.
names() {
  local size=$1 rounds
  rounds=$(( (size + $(wc -l <"$base") - 1) / $(wc -l <"$base") ))
  {
    cat "$base"
    for ((i = 1; i < rounds; i++)); do sed "s/^/n$i-/" "$base"; done
  } | head -n "$size"
}

measure() { # label, then the command; prints label, seconds, peak MB
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null 2>"$work/stderr" || {
    cat "$work/stderr" >&2; exit 1; }
  read -r seconds kb <"$work/time"
  printf '%-44s %8.2f s %8.0f MB\n' "$label" "$seconds" "$((kb / 1024))"
}

printf '%-44s %10s %11s\n' "step" "time" "peak RSS"
for size in "${sizes[@]}"; do
  names "$size" >"$work/names.txt" || true  # head may cut the last round short (SIGPIPE)
  sed 's/^/0.0.0.0 /' "$work/names.txt" >"$work/hosts.txt"
  sed 's/^/||/; s/$/^/' "$work/names.txt" >"$work/adblock.txt"
  sed 's|^|address=/|; s|$|/0.0.0.0|' "$work/names.txt" >"$work/dnsmasq.txt"
  awk '{ printf "10.%d.%d.%d\n", int(NR/65536)%256, int(NR/256)%256, NR%256 }' "$work/names.txt" >"$work/cidr.txt"
  for format in hosts adblock domains dnsmasq cidr; do
    input="$work/$format.txt"; [ "$format" = domains ] && input="$work/names.txt"
    mkdir -p "$work/rules-$format"
    measure "import $size $format" "$bin" rules import "$input" --format "$format" \
      --vendor bench -o "$work/rules-$format/list.yaml"
    measure "  check (load, compile, lint) $size $format" "$bin" rules check "$work/rules-$format"
  done
  # The same names as a list file the rule names (domains_file), not YAML scalars.
  mkdir -p "$work/rules-listfile"
  measure "import $size domains --list-files" "$bin" rules import "$work/names.txt" --format domains \
    --vendor bench -o "$work/rules-listfile/list.yaml" --list-files
  measure "  check (load, compile, lint) $size list file" "$bin" rules check "$work/rules-listfile"
  "$bin" rules check "$work/rules-listfile" | grep -o 'name table [0-9]* bytes ([0-9.]* bytes/name)'
done
