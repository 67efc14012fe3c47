#!/usr/bin/env bash
# bench.sh: the wrk benchmark of this project's servers against Caddy and nginx, in one command.
# `./bench.sh` is the reference run (~20 minutes), `--quick` a first look (~4 minutes), `--dry-run`
# the plan, `--help` every option.
#
# This file is the runner: it installs what is missing, builds, starts each server on its own
# loopback port and runs wrk against them in turn, round after round, recording around every run
# how busy the machine was, and during it the server's context switches and CPU time. The idle
# scenario holds connections open with bench/idle_client.py instead and reads the server's memory.
# bench/wrk-report.lua makes wrk print each run's counts; bench/report.sh turns what was measured
# into the report, a new bench/results/<date>-<host>.md for each run.
# It is not a general load tester: one URL, one response, loopback only.
set -euo pipefail
cd "$(dirname "$0")"
if [ "${BASH_VERSINFO[0]}${BASH_VERSINFO[1]}" -lt 44 ]; then
  echo "bench.sh: needs bash 4.4 or newer (macOS: brew install bash, then run it with that bash)" >&2
  exit 1
fi

# ---- Configuration ----

readonly BODY="Hello World!"
readonly ALL_SCENARIOS="keep-alive,ladder,buffers,churn,scaling,idle"  # the default run
readonly OPT_IN_SCENARIOS="first"  # run only when --scenarios names them
readonly KNOWN_SCENARIOS="$ALL_SCENARIOS,$OPT_IN_SCENARIOS"
readonly SCALING_CONNECTIONS="10 100 1000"  # --big adds 10000
readonly BIG_CONNECTIONS=10000
readonly IDLE_CONNECTIONS=10000  # held open, silent, by bench/idle_client.py
# Our servers close a keep-alive connection idle this long (their default, 5 s, is shorter than
# opening 10 000 connections takes); nginx's keepalive_timeout and Caddy's idle timeout are longer.
readonly IDLE_TIMEOUT_MS=60000
readonly IDLE_SECONDS=40         # the client's limit for opening them all, well under IDLE_TIMEOUT_MS
readonly IDLE_ROUND_SECONDS=6    # per server and round, for the duration estimate
# Context switches and CPU time are counted over the middle of a keep-alive run, this share of it
# left out at each end: see measure_server_window.
readonly WINDOW_MARGIN_PERCENT=10
readonly SETTLE_TRIES=25         # x 0.2 s: how long the last run's threads may take to end
readonly READY_SECONDS=10        # how long a server may take to answer its first request
readonly STOP_TRIES=50           # x 0.1 s: how long a server may take to exit on SIGTERM
readonly SERVER_START_SECONDS=1  # per server, for the duration estimate
readonly QUIET_CHECK_SECONDS=2   # the machine is watched this long, idle, before and after the run
# A run is flagged busy when other programs and the hypervisor (steal) took this share of the CPU
# time: the server and wrk can keep every core busy, so whatever else ran took its time from them.
export BUSY_PERCENT=10  # for bench/load.sh
readonly WRK_SCRIPT=bench/wrk-report.lua

threads=4 connections=100 scenarios=$ALL_SCENARIOS out_dir=bench/results
duration="" rounds="" warmup=""  # their defaults depend on --quick: apply_defaults
quick=false big=false pin=false install=true dry_run=false

usage() {
  cat <<EOF
usage: ./bench.sh [options]

Builds the servers, runs wrk against main, main_async, main_epoll, Caddy and nginx, interleaved
round by round, and reports each measure's median, min and max, and how busy the machine was
around every run. The report goes to stdout and to a new file
bench/results/<date>-<host>[-quick][-N].md, with charts when gnuplot is installed.

Scenarios (all but first run by default):
  keep-alive  wrk -t4 -c100 -d10s --latency against every server (the tutorial's parameters);
              also each server's context switches and CPU time per request
  ladder      the tutorial's steps from the shipped binaries: main, then main_async with
              --no-keepalive --buffer-size 1024 --log-requests (thread group only), then
              --buffer-size 1024 --log-requests (+ keep-alive), then --log-requests (+ 4096-byte
              buffers), then main_async (- logging), then main_epoll (event loops); Caddy as the
              reference
  buffers     main_async with --buffer-size 1024, 4096 (as shipped) and 8192, no logging
  churn       a new connection per request (-H "Connection: close"), every server
  scaling     -c 10, 100, 1000 (and 10000 with --big) against main_async, main_epoll, Caddy and
              nginx; context switches and CPU time per request as in keep-alive
  idle        $IDLE_CONNECTIONS idle keep-alive connections (one GET each, then silence) held open
              by bench/idle_client.py against main_async, main_epoll, Caddy and nginx, each
              started afresh per round: the server's memory (RSS) before and while they are held
  first       only when named (--scenarios first): the reader's first server from chapter 2,
              tutorial/code/first_server.cpp, beside main and main_async, with wrk -t4 -c100

Options:
  -t, --threads N        wrk threads (default 4)
  -c, --connections N    wrk connections for keep-alive, ladder, buffers, churn and first (default 100)
  -d, --duration T       length of each measured wrk run, e.g. 10s, 1m (default 10s; --quick: 2s)
      --rounds R         rounds per scenario (default 3; --quick: 2)
      --warmup T         unmeasured wrk run before round 1, once per server and connection
                         count in each scenario (default 2s; --quick: 1s)
      --quick            short runs of every scenario, about 4 minutes; the report is named
                         <date>-<host>-quick.md
      --big              add -c 10000 to the scaling scenario (raises ulimit -n)
      --pin              servers on the first half of the CPUs, wrk on the rest (taskset)
      --scenarios LIST   comma-separated, of: $KNOWN_SCENARIOS
                         (default: all but first)
      --out DIR          where the report and charts go (default bench/results)
      --no-install       never install packages: say what is missing and exit 1
      --with-nginx       accepted for older commands: nginx is installed like wrk and caddy
      --dry-run, --list  print the plan (servers, wrk commands, estimated time) and exit
  -h, --help             this help

The full run (no options) takes about 20 minutes; --dry-run prints the estimate for any options.
Missing wrk, caddy, nginx or curl are installed with apt-get (through sudo when not root), after
saying so; on macOS it prints the brew command instead. A run that stops part-way (a server
fails, Ctrl-C) still writes a report of what it measured, marked incomplete, and exits 1.
EOF
}

# Stops the run; the reason also goes into the report, even when said in a subshell.
fail() {
  echo "bench.sh: $*" >&2
  if [ -n "${work_dir:-}" ] && [ -d "$work_dir" ]; then echo "$*" >>"$work_dir/failure"; fi
  exit 1
}

bad_usage() {
  echo "bench.sh: $*" >&2
  echo "usage: ./bench.sh [-t N] [-c N] [-d T] [--rounds R] [--warmup T] [--quick] [--big] [--pin]" >&2
  echo "                  [--scenarios LIST] [--out DIR] [--no-install] [--dry-run] [--help]" >&2
  exit 2
}

parse_options() {
  while [ "$#" -gt 0 ]; do
    local option=$1 value=${2-}
    case $option in
      -t | --threads | -c | --connections | --rounds)
        [[ $value =~ ^[1-9][0-9]*$ ]] || bad_usage "$option needs a positive whole number, not '$value'" ;;
      -d | --duration | --warmup)
        [[ $value =~ ^[1-9][0-9]*[smh]?$ ]] || bad_usage "$option needs a duration such as 10s or 1m, not '$value'" ;;
      --scenarios | --out) [ "$#" -ge 2 ] || bad_usage "$option needs a value" ;;
    esac
    case $option in
      -h | --help) usage; exit 0 ;;
      --quick) quick=true ;;
      --big) big=true ;;
      --pin) pin=true ;;
      --with-nginx) ;;
      --no-install) install=false ;;
      --dry-run | --list) dry_run=true ;;
      -t | --threads) threads=$value; shift ;;
      -c | --connections) connections=$value; shift ;;
      -d | --duration) duration=$value; shift ;;
      --rounds) rounds=$value; shift ;;
      --warmup) warmup=$value; shift ;;
      --scenarios) scenarios=$value; shift ;;
      --out) out_dir=$value; shift ;;
      *) bad_usage "unknown option: $option" ;;
    esac
    shift
  done
  local scenario
  for scenario in ${scenarios//,/ }; do
    [[ ,$KNOWN_SCENARIOS, == *,"$scenario",* ]] || bad_usage "unknown scenario '$scenario' (known: $KNOWN_SCENARIOS)"
  done
}

# --quick shortens what was not given explicitly, whatever the order of the flags.
apply_defaults() {
  if $quick; then
    duration=${duration:-2s} rounds=${rounds:-2} warmup=${warmup:-1s}
  else
    duration=${duration:-10s} rounds=${rounds:-3} warmup=${warmup:-2s}
  fi
}

# wrk's own time syntax (10, 10s, 1m, 1h) in seconds, for the estimate.
seconds_of() {
  local number=${1%%[a-z]*}
  case ${1##*[0-9]} in m) number=$((number * 60)) ;; h) number=$((number * 3600)) ;; esac
  echo "$number"
}

# ---- Tools ----

nginx_binary() {
  command -v nginx 2>/dev/null || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true
}

# Whether a selected scenario runs the server ID.
runs_server() {
  local scenario
  for scenario in $(selected_scenarios); do
    scenario_rows "$scenario" | cut -f1 | grep -qx "$1" && return 0
  done
  return 1
}

# Missing packages, by Debian's names: Caddy and nginx only when a selected scenario runs them.
missing_packages() {
  local tool
  for tool in wrk curl make; do
    command -v "$tool" >/dev/null 2>&1 || echo "$tool"
  done
  if runs_server caddy && ! command -v caddy >/dev/null 2>&1; then echo caddy; fi
  if runs_server nginx && [ -z "$(nginx_binary)" ]; then echo nginx; fi
  if [[ ,$scenarios, == *,idle,* ]] && ! command -v python3 >/dev/null 2>&1; then echo python3; fi
  if $pin && ! command -v taskset >/dev/null 2>&1; then echo util-linux; fi
}

ensure_tools() {
  local missing
  missing=$(missing_packages | tr '\n' ' ')
  [ -n "$missing" ] || return 0
  [ "$(uname -s)" != Darwin ] || fail "missing: ${missing}- install them with: brew install ${missing% }"
  $install || fail "missing: ${missing}(and --no-install was given)"
  command -v apt-get >/dev/null 2>&1 || fail "missing: ${missing}- please install them"
  local how="apt-get"
  [ "$(id -u)" -eq 0 ] || how="sudo apt-get"
  echo "bench.sh: installing ${missing}with $how" >&2
  local services
  services=$(grep -ow -e caddy -e nginx <<<"$missing" | tr '\n' ' ' || true)
  if [ -n "$services" ]; then
    echo "bench.sh: where systemd runs, Debian's packages also start a service on port 80 for" \
      "${services% }; bench.sh does not use it: 'sudo systemctl disable --now ${services% }' stops it" >&2
  fi
  # shellcheck disable=SC2086 # one package name per word
  tests/ensure-packages.sh $missing >&2 || true
  missing=$(missing_packages | tr '\n' ' ')
  [ -z "$missing" ] || fail "missing: ${missing}- please install them (Debian/Ubuntu: apt-get install ${missing% })"
}

# ---- Servers ----
#
# Every server bench.sh can start, by id: its command, one word per line, given its own directory
# and, for those that cannot pick one themselves, a port. Ours and Caddy pick a free port (port 0)
# and say which on stdout; nginx and the first server get one picked here (needs_port), nginx's
# written into its configuration. To add a server: a line here, and its id in COMPARED_SERVERS.

server_command() {
  local id=$1 dir=$2 port=${3:-PORT}
  case $id in
    main) printf '%s\n' ./main --port 0 ;;
    main_async) printf '%s\n' ./main_async --port 0 ;;
    main_epoll) printf '%s\n' ./main_epoll --port 0 ;;
    caddy) printf '%s\n' caddy respond --listen 127.0.0.1:0 "$BODY" ;;
    nginx) printf '%s\n' "$(nginx_binary | grep . || echo nginx)" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" ;;
    # The ladder's steps and the buffer sizes: main_async with flags.
    step_group) printf '%s\n' ./main_async --port 0 --no-keepalive --buffer-size 1024 --log-requests ;;
    step_keepalive) printf '%s\n' ./main_async --port 0 --buffer-size 1024 --log-requests ;;
    step_buffers) printf '%s\n' ./main_async --port 0 --log-requests ;;
    buffer_1024) printf '%s\n' ./main_async --port 0 --buffer-size 1024 ;;
    buffer_8192) printf '%s\n' ./main_async --port 0 --buffer-size 8192 ;;
    # Chapter 2's server: the port is its only argument, and it prints "Listening on URL".
    first_server) printf '%s\n' ./first_server "$port" ;;
    # The idle scenario: room for every connection, and none closed for being idle meanwhile.
    idle_main_async | idle_main_epoll)
      printf '%s\n' "./${id#idle_}" --port 0 --max-connections $((IDLE_CONNECTIONS + 1000)) --timeout-ms "$IDLE_TIMEOUT_MS" ;;
  esac
}

# The servers compared in keep-alive, churn and scaling, in the order they take turns.
readonly COMPARED_SERVERS="main main_async main_epoll caddy nginx"

server_label() {
  case $1 in caddy) echo Caddy ;; *) echo "$1" ;; esac
}

needs_port() {
  case $1 in nginx | first_server) return 0 ;; *) return 1 ;; esac
}

# Which servers log one line per request: their stderr goes to /dev/null, not to a file.
logs_requests() {
  case $1 in main | step_group | step_keepalive | step_buffers) return 0 ;; *) return 1 ;; esac
}

# nginx's configuration, from bench/nginx.conf: everything it writes stays in DIR; it allocates its
# connection table up front, so worker_connections is sized to the scenario.
nginx_config() {
  sed -e "s|@DIR@|$1|g" -e "s|@PORT@|$2|g" -e "s|@CONNECTIONS@|$3|g" bench/nginx.conf
}

# Prints a command on one line, quoting the words that need it.
shell_words() {
  local word line=""
  for word in "$@"; do
    if [[ $word =~ [^A-Za-z0-9_./:=,+-] ]]; then word="'$word'"; fi
    line+="${line:+ }$word"
  done
  echo "$line"
}

# A free loopback port below the usual ephemeral ranges (Linux 32768-60999, macOS 49152-65535),
# so that wrk's own outgoing connections never want it.
pick_free_port() {
  local port
  for _ in $(seq 1 50); do
    port=$((20000 + RANDOM % 12000))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return 0; }
  done
  fail "no free loopback port found between 20000 and 32000"
}

declare -A SERVER_PID=() SERVER_URL=() SERVER_COMMAND=()

# The URL a server announced on stdout: "Listening on http://..." (ours), "Server address: ..." (Caddy).
announced_url() {
  sed -n -e 's|^Listening on \(http://[^ ]*\).*|\1/|p' -e 's|^Server address: \(.*\)|http://\1/|p' "$1" | head -n 1
}

# Says what went wrong with a server, with the end of what it printed, and stops.
server_failed() {
  local id=$1 what=$2 dir="$work_dir/$1"
  echo "bench.sh: $id $what; its command: ${SERVER_COMMAND[$id]} (DIR is $dir)" >&2
  tail -n 20 "$dir/stdout" "$dir/stderr" "$dir/error.log" >&2 2>/dev/null || true
  fail "$id $what"
}

start_server() {
  local id=$1
  local dir="$work_dir/$id" url="" command=() errors port=""
  mkdir -p "$dir"
  if needs_port "$id"; then port=$(pick_free_port); fi
  if [ "$id" = nginx ]; then
    mkdir -p "$dir/temp"
    nginx_config "$dir" "$port" "$nginx_connections" >"$dir/nginx.conf"
    url="http://127.0.0.1:$port/"
  fi
  mapfile -t command < <(server_command "$id" "$dir" "$port")
  command=("${server_cpus[@]}" "${command[@]}")
  SERVER_COMMAND[$id]=$(shell_words "${command[@]}")
  SERVER_COMMAND[$id]=${SERVER_COMMAND[$id]//$dir/DIR}
  errors="$dir/stderr"
  if logs_requests "$id"; then errors=/dev/null; fi
  # Made here, not by the redirections below: those happen in the background shell, which may
  # not have run yet when the loop first reads the files.
  : >"$dir/stdout"
  : >"$dir/stderr"
  # Caddy keeps certificates and autosaved config under XDG dirs: point them at our directory.
  XDG_DATA_HOME="$dir" XDG_CONFIG_HOME="$dir" "${command[@]}" >"$dir/stdout" 2>"$errors" </dev/null &
  SERVER_PID[$id]=$!
  local deadline=$((SECONDS + READY_SECONDS)) status=""
  while [ "$SECONDS" -le "$deadline" ]; do
    kill -0 "${SERVER_PID[$id]}" 2>/dev/null || server_failed "$id" "exited at start"
    [ -n "$url" ] || url=$(announced_url "$dir/stdout")
    if [ -n "$url" ]; then
      # --noproxy: an http_proxy in the environment must not carry a loopback request away.
      status=$(curl -sS --noproxy '*' -o /dev/null -m 1 -w '%{http_code}' "$url" 2>"$dir/curl" || true)
      if [ "$status" = 200 ]; then
        SERVER_URL[$id]=$url
        return 0
      fi
    fi
    sleep 0.1
  done
  [ -n "$url" ] || server_failed "$id" "printed no address on stdout within $READY_SECONDS s"
  server_failed "$id" "did not answer $url within $READY_SECONDS s (last try: status ${status:-none}$(
    sed -n '$s/^/, /p' "$dir/curl"))"
}

# A server and its children (nginx's workers).
server_pids() {
  echo "$1"
  if command -v pgrep >/dev/null 2>&1; then pgrep -P "$1" || true; fi
}

stop_server() {
  local id=$1 pid=${SERVER_PID[$1]} pids
  pids=$(server_pids "$pid")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 "$STOP_TRIES"); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  for pid in $pids; do kill -KILL "$pid" 2>/dev/null || true; done
  wait "${SERVER_PID[$id]}" 2>/dev/null || true
  unset "SERVER_PID[$id]"
}

stop_all_servers() {
  local id
  for id in "${!SERVER_PID[@]}"; do stop_server "$id"; done
}

# ---- How busy the machine is ----

# The machine with nothing of ours running, for QUIET_CHECK_SECONDS: a line KEY in meta.tsv.
check_quiet() {
  local before after one five fifteen _rest
  before=$(bench/load.sh snapshot)
  sleep "$QUIET_CHECK_SECONDS"
  after=$(bench/load.sh snapshot)
  read -r one five fifteen _rest </proc/loadavg
  printf '%s\t%s\t%s\n' "$1" "$one $five $fifteen" "$(bench/load.sh between "$before" "$after" 0 | cut -f 3-)" \
    >>"$work_dir/meta.tsv"
}

# ---- Measuring ----

wrk_command() {
  local conns=$1 mode=$2 url=$3 length=$4
  local wrk_threads=$((threads < conns ? threads : conns))  # wrk needs connections >= threads
  printf '%s\n' "${wrk_cpus[@]}" wrk -s "$WRK_SCRIPT" "-t$wrk_threads" "-c$conns" "-d$length" --latency
  [ "$mode" = close ] && printf '%s\n' -H "Connection: close"
  echo "$url"
}

# Peak RSS over one wrk run: reset each process's high-water mark (writing 5 to clear_refs,
# Linux 4.0+), then read VmHWM after the run, summed over the server's processes.
reset_peak_rss() {
  local pid
  for pid in "$@"; do
    { echo 5 >"/proc/$pid/clear_refs"; } 2>/dev/null || printf 'rss_reset_failed\tyes\n' >>"$work_dir/meta.tsv"
  done
}

# A memory field of /proc/PID/status (kB), summed over the given processes: VmHWM, VmRSS.
status_kb() {
  local field=$1 pid total=0 kb
  shift
  for pid in "$@"; do
    kb=$(awk -v field="$field:" '$1 == field { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
    total=$((total + ${kb:-0}))
  done
  echo "$total"
}

# The scenarios whose runs also count the server's context switches and CPU time per request.
counts_server_usage() {
  case $1 in keep-alive | scaling) return 0 ;; *) return 1 ;; esac
}

# The server's context switches and CPU time over the middle of a wrk run that started at
# START_NS: from WINDOW_MARGIN_PERCENT of the run after its start to as much before its end.
# Switches are counted per thread, and a thread's count goes with it: main_async's threads end
# with their connections, which wrk closes as it stops. In the middle of a keep-alive run every
# connection is open. Prints: seconds, switches, CPU ticks, threads that ended in the window.
measure_server_window() {
  local start_ns=$1 seconds margin now_ns
  shift
  seconds=$(seconds_of "$duration")
  margin=$(awk -v s="$seconds" -v p="$WINDOW_MARGIN_PERCENT" 'BEGIN { print s * p / 100 }')
  sleep "$margin"
  bench/load.sh threads "$@" >"$work_dir/threads-first"
  now_ns=$(date +%s%N)
  sleep "$(awk -v s="$seconds" -v m="$margin" -v start="$start_ns" -v now="$now_ns" \
    'BEGIN { wait = s - m - (now - start) / 1e9; print (wait > 0 ? wait : 0) }')"
  bench/load.sh threads "$@" >"$work_dir/threads-second"
  # Each file: "TIME_NS TICKS", then "TID SWITCHES" per thread. A thread new in the window
  # started there, from 0.
  awk 'FNR == 1 { time[++file] = $1; ticks[file] = $2; next }
    file == 1 { first[$1] = $2; next }
    { switches += $2 - first[$1]; seen[$1] = 1 }
    END {
      for (tid in first) if (!(tid in seen)) ended++
      printf "%.3f\t%d\t%d\t%d\n", (time[2] - time[1]) / 1e9, switches, ticks[2] - ticks[1], ended
    }' "$work_dir/threads-first" "$work_dir/threads-second"
}

# The threads a server and its children have now.
thread_count() {
  local pid total=0
  for pid in "$@"; do total=$((total + $(find "/proc/$pid/task" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l))); done
  echo "$total"
}

# Waits (up to SETTLE_TRIES x 0.2 s) until the server's thread count holds still: the threads of
# the last run's connections (main_async's) may still be ending, and would end in the next window.
settle_threads() {
  local count last=-1
  for _ in $(seq 1 "$SETTLE_TRIES"); do
    count=$(thread_count "$@")
    [ "$count" != "$last" ] || return 0
    last=$count
    sleep 0.2
  done
}

# Context switches and CPU microseconds per request from measure_server_window's line and wrk's
# requests/s: the requests in the window are its length times wrk's rate over the whole run.
per_request() {
  local rps=$1 seconds switches ticks ended
  IFS=$'\t' read -r seconds switches ticks ended <<<"$2"
  awk -v rps="$rps" -v seconds="$seconds" -v switches="$switches" -v ticks="$ticks" -v ended="$ended" \
    -v hz="$(getconf CLK_TCK)" 'BEGIN {
      requests = rps * seconds
      if (rps == "NA" || requests <= 0) { printf "NA\tNA\tNA\n"; exit }
      printf "%.4f\t%.3f\t%d\n", switches / requests, ticks / hz * 1e6 / requests, ended }'
}

# One measured wrk run of one row. Appends a line to runs.tsv: scenario, row, round, server id,
# connections, requests/s, p50 ms, p99 ms, socket errors (total, connect, read, write, timeout),
# non-2xx, MB/s, peak RSS kB, then the machine: the 1-minute load average before and after, the
# shares of CPU time that other programs and steal took (%), and whether that flags it busy;
# then, in keep-alive and scaling (else NA), the server's context switches and CPU microseconds
# per request and how many of its threads ended during the window they were counted in.
measure_row() {
  local scenario=$1 row=$2 round=$3 id=$4 conns=$5 mode=$6 short=$7
  local wrk=() pids=() output="$work_dir/wrk-$scenario-$row-$round.txt" before after counts wrk_pid
  local window="" usage=$'NA\tNA\tNA' start_ns
  mapfile -t wrk < <(wrk_command "$conns" "$mode" "${SERVER_URL[$id]}" "$duration")
  mapfile -t pids < <(server_pids "${SERVER_PID[$id]}")
  if counts_server_usage "$scenario"; then settle_threads "${pids[@]}"; fi
  reset_peak_rss "${pids[@]}"
  before=$(bench/load.sh snapshot "${pids[@]}")
  start_ns=$(date +%s%N)
  "${wrk[@]}" >"$output" 2>&1 &
  wrk_pid=$! running_load=$!
  if counts_server_usage "$scenario"; then window=$(measure_server_window "$start_ns" "${pids[@]}"); fi
  wait "$wrk_pid" || true
  running_load=""
  after=$(bench/load.sh snapshot "${pids[@]}")
  kill -0 "${SERVER_PID[$id]}" 2>/dev/null || server_failed "$id" "exited during the $scenario scenario"
  # From requests/s to MB/s, then wrk's own CPU ticks: bench/wrk-report.lua's line.
  counts=$(grep '^bench-result' "$output" | cut -f 2-) || counts=$'NA\tNA\tNA\t0\t0\t0\t0\t0\t0\tNA\t0'
  [ -z "$window" ] || usage=$(per_request "${counts%%$'\t'*}" "$window")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$row" "$round" "$id" "$conns" "${counts%$'\t'*}" \
    "$(status_kb VmHWM "${pids[@]}")" "$(bench/load.sh between "$before" "$after" "${counts##*$'\t'}")" "$usage" \
    >>"$work_dir/runs.tsv"
  local rps p99 errors others steal busy switches cpu
  IFS=$'\t' read -r _ _ _ _ _ rps _ p99 errors _ _ _ _ _ _ _ _ _ others steal busy switches cpu _ \
    < <(tail -n 1 "$work_dir/runs.tsv")
  if [ "$rps" = NA ]; then
    echo "bench.sh: wrk printed no result for $id; its output:" >&2
    cat "$output" >&2
    rps=failed p99=n/a
  else
    printf -v rps '%.0f' "$rps"
    printf -v p99 '%.2f' "$p99"
  fi
  # On stderr, e.g. "  churn  2/3  main_async  -c100  41234 req/s  p99 3.10 ms  socket errors 0  others 2.1%"
  printf '  %-10s %s/%s  %-18s -c%-5s %8s req/s  p99 %s ms  socket errors %d  others %s%%%s%s%s\n' \
    "$scenario" "$round" "$rounds" "$short" "$conns" "$rps" "$p99" "$errors" "$others" \
    "$([ "$steal" = 0.0 ] || echo "  steal $steal%")" "$([ "$busy" = no ] || echo "  BUSY")" \
    "$([ "$switches" = NA ] || printf '  %.2f switches, %.1f us CPU per request' "$switches" "$cpu")" >&2
}

# The unmeasured run before round 1; also notes the row and its wrk command for the report.
warm_up_row() {
  local scenario=$1 row=$2 id=$3 conns=$4 mode=$5 label=$6 short=$7 wrk=()
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$row" "$id" "$conns" "$mode" "$label" "$short" >>"$work_dir/rows.tsv"
  mapfile -t wrk < <(wrk_command "$conns" "$mode" "${SERVER_URL[$id]}" "$warmup")
  "${wrk[@]}" >/dev/null 2>&1 || true
  mapfile -t wrk < <(wrk_command "$conns" "$mode" "${SERVER_URL[$id]}" "$duration")
  printf '%s\t%s  # %s\n' "$scenario" "$(shell_words "${wrk[@]}")" "$id" >>"$work_dir/commands.tsv"
}

# A scenario's servers run from its start to its end; its rows take turns, round after round.
run_scenario() {
  local scenario=$1 rows=() ids=() id row round conns mode label short
  mapfile -t rows < <(scenario_rows "$scenario")
  mapfile -t ids < <(printf '%s\n' "${rows[@]}" | cut -f1 | awk '!seen[$0]++')
  echo "== $scenario: starting ${ids[*]}" >&2
  printf '%s\t%s\n' "$scenario" "$(scenario_title "$scenario")" >>"$work_dir/scenarios.tsv"
  nginx_connections=$(($(most_connections "$scenario") + 1024))
  for id in "${ids[@]}"; do
    start_server "$id"
    printf '%s\t%s\t%s\n' "$scenario" "$id" "${SERVER_COMMAND[$id]}" >>"$work_dir/servers.tsv"
  done
  for row in "${!rows[@]}"; do
    IFS=$'\t' read -r id conns mode label short <<<"${rows[$row]}"
    warm_up_row "$scenario" "$row" "$id" "$conns" "$mode" "$label" "$short"
  done
  # Each round starts one row later (A B C, B C A, C A B, ...), so that no row always runs
  # first, or always right after the same neighbour.
  local count=${#rows[@]} turn
  for round in $(seq 1 "$rounds"); do
    for ((turn = 0; turn < count; turn++)); do
      row=$(((turn + round - 1) % count))
      IFS=$'\t' read -r id conns mode label short <<<"${rows[$row]}"
      measure_row "$scenario" "$row" "$round" "$id" "$conns" "$mode" "$short"
    done
  done
  for id in "${ids[@]}"; do stop_server "$id"; done
}

# ---- The idle scenario ----
#
# wrk cannot hold a connection silent: bench/idle_client.py opens them, one GET each, and keeps
# them open until bench.sh has read the server's memory. Each server starts afresh for each
# round, so that what a round measures is what its connections cost, not what an earlier round
# left in the allocator.

idle_client_command() {
  printf '%s\n' python3 bench/idle_client.py --port "$1" --connections "$2" --seconds "$IDLE_SECONDS"
}

# One round of one server. Appends a line to idle.tsv: row, round, server id, label, connections
# wanted, held, failed, seconds to open them, RSS kB before and while they were held, and how
# many were still open after that reading.
measure_idle() {
  local row=$1 round=$2 id=$3 conns=$4 label=$5 short=$6
  local pids=() port command=() before held_kb go reply=() still=() deadline
  local out="$work_dir/idle-$row-$round.out"
  mapfile -t pids < <(server_pids "${SERVER_PID[$id]}")
  port=${SERVER_URL[$id]%/} port=${port##*:}
  mapfile -t command < <(idle_client_command "$port" "$conns")
  [ "$round" -gt 1 ] || printf '%s\t%s  # %s\n' idle "$(shell_words "${command[@]}")" "${id#idle_}" >>"$work_dir/commands.tsv"
  before=$(status_kb VmRSS "${pids[@]}")
  rm -f "$work_dir/idle-go"
  mkfifo "$work_dir/idle-go"
  "${command[@]}" <"$work_dir/idle-go" >"$out" 2>"$out.stderr" &
  running_load=$!
  exec {go}>"$work_dir/idle-go"  # the client's stdin: it closes them when this closes
  deadline=$((SECONDS + IDLE_SECONDS + 10))
  until grep -q '^held' "$out" || ! kill -0 "$running_load" 2>/dev/null || [ "$SECONDS" -gt "$deadline" ]; do
    sleep 0.1
  done
  read -r -a reply < <(grep '^held' "$out" || true)
  held_kb=$(status_kb VmRSS "${pids[@]}")
  exec {go}>&-
  wait "$running_load" || true
  running_load=""
  read -r -a still < <(grep '^open' "$out" || true)
  kill -0 "${SERVER_PID[$id]}" 2>/dev/null || server_failed "$id" "exited during the idle scenario"
  if [ "${reply[0]-}" != held ]; then
    cat "$out.stderr" >&2
    fail "bench/idle_client.py gave no count against $id (its command: $(shell_words "${command[@]}"))"
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$row" "$round" "$id" "$label" "$conns" \
    "${reply[1]}" "${reply[3]}" "${reply[5]}" "$before" "$held_kb" "${still[1]:-NA}" >>"$work_dir/idle.tsv"
  # On stderr, e.g. "  idle       1/3  main_async  10000 held in 1.3 s  RSS 3.0 -> 169.4 MiB  10000 still open"
  awk -v scenario=idle -v round="$round" -v rounds="$rounds" -v short="$short" -v held="${reply[1]}" \
    -v seconds="${reply[5]}" -v before="$before" -v after="$held_kb" -v open="${still[1]:-n/a}" 'BEGIN {
      printf "  %-10s %s/%s  %-18s %6d held in %s s  RSS %.1f -> %.1f MiB  %s still open\n",
        scenario, round, rounds, short, held, seconds, before / 1024, after / 1024, open }' >&2
}

run_idle_scenario() {
  local rows=() row round turn count id conns mode label short
  mapfile -t rows < <(scenario_rows idle)
  echo "== idle: ${#rows[@]} servers, each started afresh for each round" >&2
  printf '%s\t%s\n' idle "$(scenario_title idle)" >>"$work_dir/scenarios.tsv"
  nginx_connections=$((IDLE_CONNECTIONS + 1024))
  count=${#rows[@]}
  for round in $(seq 1 "$rounds"); do
    for ((turn = 0; turn < count; turn++)); do
      row=$(((turn + round - 1) % count))
      IFS=$'\t' read -r id conns mode label short <<<"${rows[$row]}"
      start_server "$id"
      [ "$round" -gt 1 ] || printf '%s\t%s\t%s\n' idle "$id" "${SERVER_COMMAND[$id]}" >>"$work_dir/servers.tsv"
      measure_idle "$row" "$round" "$id" "$conns" "$label" "$short"
      stop_server "$id"
    done
  done
}

# ---- Scenarios ----
#
# scenario_rows prints one row per measured server, in the order they take turns:
# server id, wrk connections, mode (keep-alive or close), label for tables, short label for charts.

row() {
  local IFS=$'\t'
  echo "$*"
}

scenario_rows() {
  local id conns mode=keep-alive
  case $1 in
    keep-alive | churn)
      [ "$1" = keep-alive ] || mode=close
      for id in $COMPARED_SERVERS; do row "$id" "$connections" "$mode" "$(server_label "$id")" "$(server_label "$id")"; done
      ;;
    ladder)
      row main "$connections" keep-alive "1. main (blocking)" "1. main"
      row step_group "$connections" keep-alive "2. + thread group" "2. thread group"
      row step_keepalive "$connections" keep-alive "3. + keep-alive" "3. keep-alive"
      row step_buffers "$connections" keep-alive "4. + 4096-byte buffers" "4. 4096 B buffers"
      row main_async "$connections" keep-alive "5. - logging (main_async)" "5. no logging"
      row main_epoll "$connections" keep-alive "6. event loops (main_epoll)" "6. event loops"
      row caddy "$connections" keep-alive "Caddy (reference)" "Caddy"
      ;;
    buffers)
      row buffer_1024 "$connections" keep-alive "main_async --buffer-size 1024" "1024 B"
      row main_async "$connections" keep-alive "main_async (4096, as shipped)" "4096 B"
      row buffer_8192 "$connections" keep-alive "main_async --buffer-size 8192" "8192 B"
      ;;
    scaling)
      for conns in $(scaling_levels); do
        for id in $COMPARED_SERVERS; do
          [ "$id" != main ] || continue  # one connection at a time: nothing to scale
          row "$id" "$conns" keep-alive "$(server_label "$id")" "$(server_label "$id")"
        done
      done
      ;;
    first)
      row first_server "$connections" keep-alive "first_server (chapter 2)" "first_server"
      row main "$connections" keep-alive "main" "main"
      row main_async "$connections" keep-alive "main_async" "main_async"
      ;;
    idle)
      for id in idle_main_async idle_main_epoll caddy nginx; do
        row "$id" "$IDLE_CONNECTIONS" idle "$(server_label "${id#idle_}")" "$(server_label "${id#idle_}")"
      done
      ;;
  esac
}

scenario_title() {
  case $1 in
    keep-alive) echo "Keep-alive: wrk -t$threads -c$connections -d$duration --latency" ;;
    ladder) echo "The ladder: the tutorial's steps, one binary each" ;;
    buffers) echo "Buffer sizes: main_async with 1024, 4096 and 8192-byte buffers" ;;
    churn) echo "Churn: a new connection per request (Connection: close)" ;;
    scaling) echo "Scaling: connections $(scaling_levels | sed 's/ /, /g')" ;;
    idle) echo "Idle: memory with $IDLE_CONNECTIONS idle keep-alive connections held open" ;;
    first) echo "The first server: tutorial/code/first_server.cpp beside main and main_async, wrk -t$threads -c$connections -d$duration" ;;
  esac
}

scaling_levels() {
  if $big; then echo "$SCALING_CONNECTIONS $BIG_CONNECTIONS"; else echo "$SCALING_CONNECTIONS"; fi
}

selected_scenarios() {
  local scenario
  for scenario in ${KNOWN_SCENARIOS//,/ }; do
    [[ ,$scenarios, == *,"$scenario",* ]] && echo "$scenario"
  done
  return 0
}

# The most wrk connections of the given scenarios.
most_connections() {
  local scenario
  for scenario in "$@"; do scenario_rows "$scenario" | cut -f2; done | sort -n | tail -n 1
}

plural() {
  if [ "$1" -eq 1 ]; then echo "$2"; else echo "${2}s"; fi
}

# ---- The plan ----

describe_estimate() {
  local scenario row_total=0 servers=0 idle_rows=0 seconds
  for scenario in $(selected_scenarios); do
    if [ "$scenario" = idle ]; then
      idle_rows=$(scenario_rows idle | wc -l)
      continue
    fi
    row_total=$((row_total + $(scenario_rows "$scenario" | wc -l)))
    servers=$((servers + $(scenario_rows "$scenario" | cut -f1 | sort -u | wc -l)))
  done
  seconds=$((row_total * (rounds * $(seconds_of "$duration") + $(seconds_of "$warmup")) \
    + servers * SERVER_START_SECONDS + idle_rows * rounds * IDLE_ROUND_SECONDS + 2 * QUIET_CHECK_SECONDS))
  local plan=""
  [ "$row_total" -eq 0 ] ||
    plan="$row_total server rows x ($rounds $(plural "$rounds" round) x $duration + $warmup warm-up)"
  [ "$idle_rows" -eq 0 ] ||
    plan+="${plan:+ + }$idle_rows idle rows x $rounds $(plural "$rounds" round) x ~${IDLE_ROUND_SECONDS}s"
  echo "$plan, about $((seconds / 60)) min $((seconds % 60)) s"
}

# --pin: the first half of the online CPUs for the servers, the rest for wrk.
choose_cpus() {
  server_cpus=() wrk_cpus=()
  $pin || return 0
  local cpus half
  cpus=$(getconf _NPROCESSORS_ONLN)
  [ "$cpus" -ge 2 ] || bad_usage "--pin needs 2 CPUs or more; this machine has $cpus"
  half=$((cpus / 2))
  server_cpus=(taskset -c "$(seq -s , 0 $((half - 1)))")
  wrk_cpus=(taskset -c "$(seq -s , "$half" $((cpus - 1)))")
}

print_plan() {
  local scenario id conns mode command=()
  echo "Plan: $(describe_estimate)"
  echo
  for scenario in $(selected_scenarios); do
    echo "## $(scenario_title "$scenario")"
    if [ "$scenario" = idle ]; then print_idle_plan; continue; fi
    echo "servers, started for the scenario and kept running through its $rounds $(plural "$rounds" round):"
    while IFS= read -r id; do
      mapfile -t command < <(server_command "$id" DIR)
      echo "  $id: $(shell_words "${server_cpus[@]}" "${command[@]}")"
    done < <(scenario_rows "$scenario" | cut -f1 | awk '!seen[$0]++')
    echo "round 1 in this order, each later round starting one row later (after one $warmup warm-up run each):"
    while IFS=$'\t' read -r id conns mode _; do
      mapfile -t command < <(wrk_command "$conns" "$mode" "URL_OF_$id" "$duration")
      echo "  $(shell_words "${command[@]}")"
    done < <(scenario_rows "$scenario")
    echo
  done
  if runs_server nginx && [ -z "$(nginx_binary)" ]; then
    echo "nginx is not installed yet: the real run installs it, as it does wrk and caddy."
  fi
}

print_idle_plan() {
  local id command=()
  echo "round 1 in this order, each later round starting one row later; each server started for its"
  echo "turn, its RSS read before and while the client holds the connections, then stopped:"
  while IFS= read -r id; do
    mapfile -t command < <(server_command "$id" DIR)
    echo "  $(shell_words "${server_cpus[@]}" "${command[@]}")"
    mapfile -t command < <(idle_client_command "PORT_OF_$id" "$IDLE_CONNECTIONS")
    echo "    $(shell_words "${command[@]}")"
  done < <(scenario_rows idle | cut -f1)
  echo
}

# Each connection is a descriptor in wrk and in the server; at -c1000 the usual 1024 is too few.
raise_open_files_limit() {
  local wanted soft
  # shellcheck disable=SC2046 # one scenario per word
  wanted=$(($(most_connections $(selected_scenarios)) + 1024)) soft=$(ulimit -Sn)
  if [ "$soft" = unlimited ] || [ "$soft" -ge "$wanted" ] || ulimit -Sn "$wanted" 2>/dev/null; then return 0; fi
  ulimit -Sn "$(ulimit -Hn)"
  printf 'note\tulimit -n could only be raised to %s; runs with more connections may show socket errors.\n' \
    "$(ulimit -Sn)" >>"$work_dir/meta.tsv"
}

# ---- main ----

work_dir="" nginx_connections=1024 completed=false running_load=""
server_cpus=() wrk_cpus=()

# However the run ends, what it measured becomes a report; one that did not finish says so.
finish() {
  local status=$?
  trap - EXIT
  # A background wrk or idle client ignores Ctrl-C (bash starts it so): stop it before the servers.
  if [ -n "$running_load" ]; then kill "$running_load" 2>/dev/null || true; fi
  stop_all_servers
  [ -n "$work_dir" ] || exit "$status"
  if ! $completed; then
    [ -s "$work_dir/failure" ] || echo "stopped with exit status $status" >"$work_dir/failure"
    [ "$status" -ne 0 ] || status=1
  fi
  if [ -s "$work_dir/runs.tsv" ] || [ -s "$work_dir/idle.tsv" ]; then
    printf 'ended\t%s\n' "$(date +%s)" >>"$work_dir/meta.tsv"
    if ! bench/report.sh "$work_dir" "$out_dir" "$($quick && echo quick)"; then
      echo "bench.sh: writing the report failed; the measurements are kept in $work_dir" >&2
      exit 1
    fi
  fi
  rm -rf "$work_dir"
  exit "$status"
}

main() {
  local invocation scenario
  invocation=$(shell_words ./bench.sh "$@")
  parse_options "$@"
  apply_defaults
  choose_cpus
  if $dry_run; then print_plan; return 0; fi
  ensure_tools
  make >&2
  if runs_server first_server && [ ! -x first_server ]; then
    fail "./first_server is missing: make builds it from tutorial/code/first_server.cpp (chapter 2)"
  fi
  work_dir=$(mktemp -d "${TMPDIR:-/tmp}/bench.XXXXXX")
  trap finish EXIT
  trap 'echo "interrupted (Ctrl-C)" >>"$work_dir/failure"; exit 130' INT
  trap 'echo "terminated (SIGTERM)" >>"$work_dir/failure"; exit 143' TERM
  touch "$work_dir"/{rows,runs,servers,commands,scenarios,idle}.tsv
  nginx_config DIR PORT CONNECTIONS | sed '/^#/d' >"$work_dir/nginx.conf.sample"
  printf '%s\t%s\n' invocation "$invocation" started "$(date +%s)" duration "$duration" rounds "$rounds" \
    warmup "$warmup" busy_percent "$BUSY_PERCENT" quiet_seconds "$QUIET_CHECK_SECONDS" \
    pin_servers "${server_cpus[*]:2}" pin_wrk "${wrk_cpus[*]:2}" window_margin_percent "$WINDOW_MARGIN_PERCENT" \
    >"$work_dir/meta.tsv"
  raise_open_files_limit
  echo "bench.sh: $(describe_estimate)" >&2
  check_quiet quiet_before
  for scenario in $(selected_scenarios); do
    if [ "$scenario" = idle ]; then run_idle_scenario; else run_scenario "$scenario"; fi
  done
  check_quiet quiet_after
  completed=true
}

main "$@"
