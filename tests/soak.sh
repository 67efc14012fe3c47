#!/usr/bin/env bash
# soak.sh: does a server's memory stay flat while it serves connection after connection?
#
# Starts the server on 127.0.0.1, then loads it in two phases: a warm-up and the run. Each
# phase churns connections (batches of --concurrency connections opened at once, one request
# each) while --keepalive connections send request after request. Once a second it samples
# the server's resident memory (RSS) and thread count from /proc. After each phase it waits
# for the server to go idle and takes a sample. The verdict compares the run's end with the
# warm-up's end:
#
#   - RSS may grow by at most --rss-bound KiB (default 2048). Why 2 MiB: the warm-up has
#     already brought the allocator's arenas and the C library's stack cache to their working
#     size, so a server that frees what each connection used stays flat but for allocator
#     noise (a few hundred KiB). A leak does not: the smallest heap block a connection could
#     leave behind (32 bytes with malloc's header), leaked 100 000 times, is 3.1 MiB; a thread
#     stack never freed is 8 KiB or more of touched pages per connection.
#     2 MiB over 100 000 connections is 21 bytes a connection: less than any object that
#     could leak.
#   - threads must come back to the count the idle server had before any load (main_async's
#     come and go with connections; main_epoll's workers stay).
#   - every request must have been answered with 200.
#
#   tests/soak.sh                                   # main_async, 100 000 churned connections
#   tests/soak.sh --server ./main_epoll --server-arg=--workers --server-arg=2
#   tests/soak.sh --server build/main_async_unreaped --connections 20000 --csv unreaped.csv
#
# `make soak` builds what it needs and runs it against ./main_async, then ./main_epoll.
set -euo pipefail

readonly PROGRAM=${0##*/}

server=./main_async
load_client=build/load_client
connections=100000
warmup=10000
concurrency=100
keepalive=50
rss_bound_kib=2048
settle_seconds=10
max_seconds=900
csv=""
server_args=()

usage() {
  cat <<EOF
usage: $PROGRAM [options]

Loads a server on 127.0.0.1 with churned and keep-alive connections, samples its RSS and
thread count every second, prints a table and the growth from the end of the warm-up to the
end of the run. Exits 1 if RSS grew by more than --rss-bound, if the threads did not come
back to the idle count, or if a request was not answered.

  --server PATH        server binary to measure (default $server)
  --server-arg ARG     pass ARG to the server (repeatable), e.g. --server-arg=--no-keepalive
  --load-client PATH   the load generator, built from tests/load_client.cpp (default $load_client)
  --connections N      connections churned in the measured run (default $connections)
  --warmup N           connections churned in the warm-up (default $warmup)
  --concurrency M      connections open at once in each churn batch (default $concurrency)
  --keepalive K        keep-alive connections loading the server during each phase,
                       0 for none (default $keepalive)
  --rss-bound KIB      largest RSS growth allowed, in KiB (default $rss_bound_kib)
  --settle S           seconds to wait for the server to go idle after a phase (default $settle_seconds)
  --max-seconds S      stop the whole run after this long (default $max_seconds)
  --csv FILE           also write every sample to FILE as CSV
  --help               show this help

The same measurement works on the broken design, a group that never joins finished threads:
  make build/main_async_unreaped
  $PROGRAM --server build/main_async_unreaped --connections 20000 --csv unreaped.csv
(Past about 32 000 connections it runs out of memory mappings, two per thread stack against
vm.max_map_count, and drops every new connection.)
EOF
}

die() {
  echo "$PROGRAM: $*" >&2
  exit 2
}

# ---- options ----

parse_options() {
  while [ "$#" -gt 0 ]; do
    local flag=$1 value=""
    case $flag in
      --help | -h)
        usage
        exit 0
        ;;
      --*=*)
        value=${flag#*=}
        flag=${flag%%=*}
        ;;
      --*)
        [ "$#" -ge 2 ] || die "missing value for $flag"
        value=$2
        shift
        ;;
      *) die "unknown argument: $flag (see --help)" ;;
    esac
    shift
    case $flag in
      --server) server=$value ;;
      --server-arg) server_args+=("$value") ;;
      --load-client) load_client=$value ;;
      --connections) connections=$(number "$flag" "$value") ;;
      --warmup) warmup=$(number "$flag" "$value") ;;
      --concurrency) concurrency=$(number "$flag" "$value") ;;
      --keepalive) keepalive=$(number "$flag" "$value") ;;
      --rss-bound) rss_bound_kib=$(number "$flag" "$value") ;;
      --settle) settle_seconds=$(number "$flag" "$value") ;;
      --max-seconds) max_seconds=$(number "$flag" "$value") ;;
      --csv) csv=$value ;;
      *) die "unknown option: $flag (see --help)" ;;
    esac
  done
  [ -x "$server" ] || die "no server binary at $server (run make first)"
  [ -x "$load_client" ] || die "no load client at $load_client (make $load_client)"
  [ "$concurrency" -gt 0 ] || die "--concurrency must be at least 1"
}

number() {
  [[ $2 =~ ^[0-9]+$ ]] || die "invalid value for $1: '$2'"
  echo "$((10#$2))"
}

# ---- the server and its numbers ----

work=""
port=""
idle_threads=1
server_pid=""
sampler_pid=""
keepalive_pid=""
started_at=$SECONDS

cleanup() {
  local pid
  for pid in "$sampler_pid" "$keepalive_pid"; do
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
  done
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  wait 2>/dev/null || true
  [ -n "$work" ] && rm -rf "$work"
}

start_server() {
  # The background job opens its output itself, maybe after the first look for the port: the
  # file must already be there for sed, or set -e ends the script.
  : >"$work/server.out"
  "$server" --host 127.0.0.1 --port 0 "${server_args[@]}" >"$work/server.out" 2>"$work/server.err" &
  server_pid=$!
  local tries
  for ((tries = 0; tries < 100; tries++)); do
    port=$(sed -n 's|^Listening on http://127\.0\.0\.1:\([0-9]*\)$|\1|p' "$work/server.out")
    if [ -n "$port" ]; then
      started_at=$SECONDS
      return 0
    fi
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  cat "$work/server.err" >&2
  die "$server did not print \"Listening on http://127.0.0.1:PORT\""
}

# Prints "RSS_KIB THREADS VSZ_MIB" of the server (zeros once it has gone).
server_stats() {
  awk '/^VmRSS:/ { rss = $2 } /^Threads:/ { threads = $2 } /^VmSize:/ { vsz = int($2 / 1024) }
       END { printf "%d %d %d\n", rss, threads, vsz }' "/proc/$server_pid/status" 2>/dev/null || echo "0 0 0"
}

# Connections churned so far: the phase's base plus the load client's last progress line.
churned_so_far() {
  local phase base done_count
  read -r phase base <"$work/phase" || true
  done_count=$(awk '$1 == "progress" { count = $2 } END { print count + 0 }' "$work/progress" 2>/dev/null || echo 0)
  echo "$phase $((base + done_count))"
}

# Appends one sample, "SECONDS,PHASE,CHURNED,RSS_KIB,THREADS,VSZ_MIB", to the samples file.
take_sample() {
  local label=${1:-} phase churned rss threads vsz
  read -r phase churned < <(churned_so_far)
  read -r rss threads vsz < <(server_stats)
  echo "$((SECONDS - started_at)),${label:-$phase},$churned,$rss,$threads,$vsz" >>"$work/samples.csv"
}

# Runs in the background until killed (or until the server has gone): a sample a second.
sample_every_second() {
  while kill -0 "$server_pid" 2>/dev/null && ((SECONDS - started_at < max_seconds + 60)); do
    take_sample
    sleep 1
  done
}

set_phase() {
  echo "$1 $2" >"$work/phase.new"
  mv "$work/phase.new" "$work/phase"
  : >"$work/progress"
}

seconds_left() {
  local left=$((max_seconds - (SECONDS - started_at)))
  ((left > 0)) || left=1
  echo "$left"
}

# ---- load ----

failed_requests=0

# Churns `count` connections while the keep-alive load runs; adds to failed_requests.
run_phase() {
  local name=$1 base=$2 count=$3 summary
  set_phase "$name" "$base"
  if ((keepalive > 0)); then
    "$load_client" keepalive --port "$port" --connections "$keepalive" --seconds "$(seconds_left)" \
      >"$work/keepalive.out" &
    keepalive_pid=$!
  fi
  "$load_client" churn --port "$port" --connections "$count" --concurrency "$concurrency" \
    --seconds "$(seconds_left)" >"$work/progress" || true
  summary=$(tail -n 1 "$work/progress")
  echo "  $name: $summary"
  if [[ $summary =~ ^churn:\ ([0-9]+)\ connections,\ ([0-9]+)\ failed ]]; then
    # Connections never tried (the run stopped early) count as failed too.
    failed_requests=$((failed_requests + BASH_REMATCH[2] + count - BASH_REMATCH[1]))
  else
    failed_requests=$((failed_requests + count))
  fi
  if [ -n "$keepalive_pid" ]; then
    kill -TERM "$keepalive_pid" 2>/dev/null || true
    wait "$keepalive_pid" || true
    keepalive_pid=""
    summary=$(tail -n 1 "$work/keepalive.out")
    echo "  $name: $summary"
    [[ $summary =~ ,\ ([0-9]+)\ failed$ ]] && failed_requests=$((failed_requests + BASH_REMATCH[1]))
  fi
}

# Waits up to --settle seconds for the thread count to fall back to `idle_threads`, then one
# more second for memory to be returned, and takes the phase's closing sample.
settle() {
  local label=$1 rss threads vsz deadline=$((SECONDS + settle_seconds))
  set_phase idle "$(churned_so_far | cut -d' ' -f2)"
  while read -r rss threads vsz < <(server_stats) && ((threads > idle_threads && SECONDS < deadline)); do
    sleep 0.2
  done
  sleep 1
  take_sample "$label"
}

# SIGTERM, then up to 10 s to exit (SIGKILL after that). Sets server_status. (A server that
# died during the run is still our unreaped child, so this reports how it died.)
stop_server() {
  local tries
  kill -TERM "$server_pid" 2>/dev/null || true
  for ((tries = 0; tries < 100; tries++)); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$server_pid" 2>/dev/null || true
  server_status=0
  wait "$server_pid" || server_status=$?
  server_pid=""
}

# ---- report ----

# The row of the samples file labelled `label`, as "CHURNED RSS THREADS".
marker() {
  awk -F, -v label="$1" '$2 == label { print $3, $4, $5 }' "$work/samples.csv" | tail -n 1
}

# At most about 20 evenly spaced rows, plus the two closing samples.
print_table() {
  awk -F, 'NR == FNR { rows++; next }
           FNR == 1 { step = int((rows + 19) / 20); if (step < 1) step = 1;
                      printf "%6s  %-10s  %11s  %10s  %7s  %8s\n", "t (s)", "phase", "connections", "RSS (KiB)", "threads", "VSZ (MiB)" }
           $2 ~ /-end$/ || (FNR - 1) % step == 0 {
                      printf "%6d  %-10s  %11d  %10d  %7d  %8d\n", $1, $2, $3, $4, $5, $6 }' \
    "$work/samples.csv" "$work/samples.csv"
}

main() {
  parse_options "$@"
  work=$(mktemp -d)
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  : >"$work/samples.csv"
  set_phase idle 0
  start_server
  sleep 0.5
  local idle_rss idle_vsz
  read -r idle_rss idle_threads idle_vsz < <(server_stats)
  echo "$PROGRAM: $server on port $port: idle at $idle_rss KiB RSS ($idle_vsz MiB virtual), $idle_threads thread(s)"
  echo "  warm-up $warmup + run $connections connections, $concurrency at once, $keepalive kept alive alongside"
  sample_every_second &
  sampler_pid=$!

  run_phase warmup 0 "$warmup"
  settle warmup-end
  run_phase run "$warmup" "$connections"
  settle run-end

  kill "$sampler_pid" 2>/dev/null || true
  wait "$sampler_pid" 2>/dev/null || true
  sampler_pid=""

  local server_status
  stop_server

  echo
  print_table
  [ -z "$csv" ] || { { echo "seconds,phase,connections,rss_kib,threads,vsz_mib"; cat "$work/samples.csv"; } >"$csv"; }

  local warm_churned warm_rss warm_threads end_churned end_rss end_threads growth verdict=0
  read -r warm_churned warm_rss warm_threads < <(marker warmup-end)
  read -r end_churned end_rss end_threads < <(marker run-end)
  growth=$((end_rss - warm_rss))
  echo
  printf 'warm-up end: %8d KiB RSS, %5d thread(s), %7d connections churned\n' "$warm_rss" "$warm_threads" "$warm_churned"
  printf 'run end:     %8d KiB RSS, %5d thread(s), %7d connections churned\n' "$end_rss" "$end_threads" "$end_churned"
  printf 'RSS growth:  %+8d KiB over %d connections (bound %d KiB)\n' "$growth" "$((end_churned - warm_churned))" \
    "$rss_bound_kib"
  echo "server exit status after SIGTERM: $server_status"

  if ((growth > rss_bound_kib)); then
    echo "FAIL: RSS grew by $growth KiB, more than $rss_bound_kib KiB" >&2
    verdict=1
  fi
  if ((end_threads > idle_threads || warm_threads > idle_threads)); then
    echo "FAIL: $warm_threads/$end_threads thread(s) after the phases, $idle_threads when idle" >&2
    verdict=1
  fi
  # Under load, at most a thread per open connection (main_async; an event loop adds none), and
  # little more: threads that end must go while the load lasts, not only once it stops (a group
  # whose ending threads wait for each other piles them up by the thousand and drains them
  # afterwards).
  local peak_threads thread_bound=$((idle_threads + 2 * (concurrency + keepalive)))
  peak_threads=$(awk -F, 'max < $5 { max = $5 } END { print max + 0 }' "$work/samples.csv")
  printf 'peak threads under load: %d (bound %d: twice the connections open at once)\n' "$peak_threads" "$thread_bound"
  if ((peak_threads > thread_bound)); then
    echo "FAIL: $peak_threads threads at once under load, more than $thread_bound" >&2
    verdict=1
  fi
  if ((failed_requests > 0)); then
    echo "FAIL: $failed_requests request(s) not answered with 200" >&2
    verdict=1
  fi
  if ((server_status != 0)); then
    echo "FAIL: the server exited with status $server_status; its stderr ends:" >&2
    tail -n 20 "$work/server.err" >&2
    verdict=1
  fi
  ((verdict != 0)) || echo "PASS"
  return "$verdict"
}

main "$@"
