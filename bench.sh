#!/usr/bin/env bash
# bench.sh: the wrk benchmark of this project's two servers against Caddy (and nginx), in one command.
#
#   ./bench.sh            the reference run: every scenario, 3 rounds of 10 s per server (~15 minutes)
#   ./bench.sh --quick    every scenario, short runs (~3 minutes): for CI and a first look
#   ./bench.sh --dry-run  the plan (every command) without running anything
#   ./bench.sh --help     every option
#
# It builds with `make`, installs wrk, caddy and nginx if they are missing, starts each server on its own
# loopback port, and runs wrk against all of them in turn, round after round, so that a noisy
# machine slows every server alike and the ratios between them hold. The Markdown report goes to
# stdout and to bench/results/<date>-<host>.md, with a chart beside it when gnuplot is installed.
#
# It is not a general load tester: one URL, one response, loopback only. Numbers from a machine
# that is busy with other work are noisy; compare the ratios within one report, not across reports.
set -euo pipefail
cd "$(dirname "$0")"
if [ "${BASH_VERSINFO[0]}" -lt 4 ]; then
  echo "bench.sh: needs bash 4 or newer (macOS: brew install bash, then run it with that bash)" >&2
  exit 1
fi

# ---- Configuration ----

readonly BODY="Hello World!"
readonly ALL_SCENARIOS="keep-alive,ladder,buffers,churn,scaling"
readonly SCALING_CONNECTIONS="10 100 1000"  # --big adds 10000
readonly BIG_CONNECTIONS=10000
readonly READY_SECONDS=10                  # how long a server may take to answer its first request
readonly STOP_TRIES=50                     # x 0.1 s: how long a server may take to exit on SIGTERM
readonly SERVER_START_SECONDS=1            # per server, for the duration estimate

threads=4
connections=100
duration=""     # defaults depend on --quick; set in apply_defaults
rounds=""
warmup=""
quick=false
big=false
install=true
dry_run=false
scenarios=$ALL_SCENARIOS
out_dir=bench/results

usage() {
  cat <<EOF
usage: ./bench.sh [options]

Builds both servers, then runs wrk against main, main_async, Caddy and (when installed) nginx,
interleaved round-robin, and reports the median of each measure per server. The Markdown report
goes to stdout and to bench/results/<date>-<host>.md, with a chart when gnuplot is installed.

Scenarios (all run by default):
  keep-alive  wrk -t4 -c100 -d10s --latency against every server (the tutorial's parameters)
  ladder      the tutorial's steps, each from the shipped binaries: main, then main_async with
              --no-keepalive --buffer-size 1024 --log-requests (thread group only), then
              --buffer-size 1024 --log-requests (+ keep-alive), then --log-requests (+ 4096-byte
              buffers), then main_async (- logging); Caddy as the reference
  buffers     main_async with --buffer-size 1024, 4096 (as shipped) and 8192, no logging
  churn       a new connection per request (-H "Connection: close"), every server
  scaling     -c 10, 100, 1000 (and 10000 with --big) against main_async, Caddy and nginx

Options:
  -t, --threads N        wrk threads (default 4)
  -c, --connections N    wrk connections for keep-alive, ladder and churn (default 100)
  -d, --duration T       length of each measured wrk run, e.g. 10s, 1m (default 10s; --quick: 2s)
      --rounds R         rounds per scenario; the report gives the median (default 3; --quick: 2)
      --warmup T         unmeasured wrk run before round 1, once per server and connection
                         count in each scenario (default 2s; --quick: 1s)
      --quick            short runs of every scenario, about 3 minutes in all; the report is
                         named <date>-<host>-quick.md
      --big              add -c 10000 to the scaling scenario (raises ulimit -n)
      --with-nginx       accepted for older commands: nginx is installed like wrk and caddy
      --scenarios LIST   comma-separated subset of: $ALL_SCENARIOS (default all)
      --out DIR          where the report and charts go (default bench/results)
      --no-install       never install packages: say what is missing and exit 1
      --dry-run, --list  print the plan (servers, wrk commands, estimated time) and exit
  -h, --help             this help

The full run (no options) takes about 15 minutes; --dry-run prints the estimate for any options.
Missing wrk, caddy, nginx or curl are installed with apt-get (through sudo when not root), after
saying so. On macOS it prints the brew command instead.
EOF
}

fail() {
  echo "bench.sh: $*" >&2
  exit 1
}

bad_usage() {
  echo "bench.sh: $*" >&2
  echo "usage: ./bench.sh [-t N] [-c N] [-d T] [--rounds R] [--warmup T] [--quick] [--big]" >&2
  echo "                  [--with-nginx] [--scenarios LIST] [--out DIR] [--no-install] [--dry-run]" >&2
  exit 2
}

need_positive_integer() {
  [[ $2 =~ ^[1-9][0-9]*$ ]] || bad_usage "$1 needs a positive whole number, not '$2'"
}

need_duration() {
  [[ $2 =~ ^[1-9][0-9]*(s|m|h)?$ ]] || bad_usage "$1 needs a duration in wrk's syntax such as 10s or 1m, not '$2'"
}

parse_options() {
  while [ "$#" -gt 0 ]; do
    local option=$1
    case $option in
      -h | --help) usage; exit 0 ;;
      --quick) quick=true ;;
      --big) big=true ;;
      --with-nginx) ;;
      --no-install) install=false ;;
      --dry-run | --list) dry_run=true ;;
      -t | --threads | -c | --connections | -d | --duration | --rounds | --warmup | --scenarios | --out)
        [ "$#" -ge 2 ] || bad_usage "$option needs a value"
        local value=$2
        shift
        case $option in
          -t | --threads) need_positive_integer "$option" "$value"; threads=$value ;;
          -c | --connections) need_positive_integer "$option" "$value"; connections=$value ;;
          -d | --duration) need_duration "$option" "$value"; duration=$value ;;
          --rounds) need_positive_integer "$option" "$value"; rounds=$value ;;
          --warmup) need_duration "$option" "$value"; warmup=$value ;;
          --scenarios) scenarios=$value ;;
          --out) out_dir=$value ;;
        esac
        ;;
      *) bad_usage "unknown option: $option" ;;
    esac
    shift
  done
  local scenario
  for scenario in ${scenarios//,/ }; do
    [[ ,$ALL_SCENARIOS, == *,"$scenario",* ]] || bad_usage "unknown scenario '$scenario' (known: $ALL_SCENARIOS)"
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
  local number=${1%%[a-z]*} unit=${1##*[0-9]}
  case $unit in
    s | "") echo "$number" ;;
    m) echo $((number * 60)) ;;
    h) echo $((number * 3600)) ;;
  esac
}

# ---- Tools ----

nginx_binary() {
  command -v nginx 2>/dev/null || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true
}

missing_tools() {
  local tool
  for tool in wrk caddy curl make; do
    command -v "$tool" >/dev/null 2>&1 || echo "$tool"
  done
  [ -n "$(nginx_binary)" ] || echo nginx
}

ensure_tools() {
  local missing
  missing=$(missing_tools | tr '\n' ' ')
  [ -n "$missing" ] || return 0
  if [ "$(uname -s)" = Darwin ]; then
    fail "missing: ${missing}- install them with: brew install ${missing% }"
  fi
  if ! $install; then
    fail "missing: ${missing}(and --no-install was given)"
  fi
  if command -v apt-get >/dev/null 2>&1; then
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
  fi
  missing=$(missing_tools | tr '\n' ' ')
  [ -z "$missing" ] || fail "missing: ${missing}- please install them (Debian/Ubuntu: apt-get install ${missing% })"
}

# ---- Servers ----
#
# A server is named by an id; server_command prints how to start it, one word per line, given
# its own directory. Our servers and Caddy pick a free port themselves (port 0) and say which on
# stdout; nginx gets one picked here, written into its configuration file.

server_command() {
  local id=$1 dir=$2
  case $id in
    main) printf '%s\n' ./main --port 0 ;;
    main_async) printf '%s\n' ./main_async --port 0 ;;
    step_group) printf '%s\n' ./main_async --port 0 --no-keepalive --buffer-size 1024 --log-requests ;;
    step_keepalive) printf '%s\n' ./main_async --port 0 --buffer-size 1024 --log-requests ;;
    step_buffers) printf '%s\n' ./main_async --port 0 --log-requests ;;
    buffer_1024) printf '%s\n' ./main_async --port 0 --buffer-size 1024 ;;
    buffer_8192) printf '%s\n' ./main_async --port 0 --buffer-size 8192 ;;
    caddy) printf '%s\n' caddy respond --listen 127.0.0.1:0 "$BODY" ;;
    nginx) printf '%s\n' "$(nginx_binary)" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" ;;
  esac
}

# Which servers log one line per request: their stderr goes to /dev/null, not to a file.
logs_requests() {
  case $1 in main | step_group | step_keepalive | step_buffers) return 0 ;; *) return 1 ;; esac
}

nginx_available() {
  [ -n "$(nginx_binary)" ]
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

# nginx's configuration: everything it writes stays in DIR, and it runs in the foreground.
# nginx allocates its connection table up front, so worker_connections (and with it nginx's
# memory) is sized to the scenario: its most connections + 1024.
nginx_config() {
  local dir=$1 port=$2 files=$3
  cat <<EOF
# Written by bench.sh: nginx answering "$BODY" on one loopback port, everything in $dir.
daemon off;
worker_processes auto;
worker_rlimit_nofile $files;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections $files; }
http {
  access_log off;
  client_body_temp_path $dir/temp/body;
  proxy_temp_path $dir/temp/proxy;
  fastcgi_temp_path $dir/temp/fastcgi;
  uwsgi_temp_path $dir/temp/uwsgi;
  scgi_temp_path $dir/temp/scgi;
  server {
    listen 127.0.0.1:$port;
    location / {
      default_type text/plain;
      return 200 "$BODY";
    }
  }
}
EOF
}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A free port below the usual ephemeral ranges (Linux 32768-60999, macOS 49152-65535), so that
# wrk's own outgoing connections never want it.
pick_free_port() {
  local port
  for _ in $(seq 1 50); do
    port=$((20000 + RANDOM % 12000))
    port_in_use "$port" || { echo "$port"; return 0; }
  done
  fail "no free loopback port found between 20000 and 32000"
}

declare -A SERVER_PID=() SERVER_URL=() SERVER_COMMAND=()

# The URL a server announced on stdout: "Listening on http://..." (ours), "Server address: ..." (Caddy).
announced_url() {
  local out=$1
  sed -n -e 's|^Listening on \(http://[^ ]*\).*|\1/|p' -e 's|^Server address: \(.*\)|http://\1/|p' "$out" | head -n 1
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
  local dir="$work_dir/$id" port=0 url=""
  mkdir -p "$dir"
  if [ "$id" = nginx ]; then
    port=$(pick_free_port)
    mkdir -p "$dir/temp"
    nginx_config "$dir" "$port" "$nginx_connections" >"$dir/nginx.conf"
    url="http://127.0.0.1:$port/"
  fi
  local command=()
  mapfile -t command < <(server_command "$id" "$dir")
  SERVER_COMMAND[$id]=$(shell_words "${command[@]}")
  SERVER_COMMAND[$id]=${SERVER_COMMAND[$id]//$dir/DIR}
  local errors="$dir/stderr"
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
  local pid=$1
  echo "$pid"
  if command -v pgrep >/dev/null 2>&1; then
    pgrep -P "$pid" || true
  fi
}

stop_server() {
  local id=$1 pid=${SERVER_PID[$1]}
  local pids
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

# ---- Measuring ----

# Peak RSS over one wrk run: reset each process's high-water mark (writing 5 to clear_refs,
# Linux 4.0+), then read VmHWM after the run, summed over the server's processes.
reset_peak_rss() {
  local pid
  [ -d /proc ] || return 0
  for pid in $(server_pids "$1"); do
    { echo 5 >"/proc/$pid/clear_refs"; } 2>/dev/null || rss_reset_failed=true
  done
}

peak_rss_kb() {
  local pid total=0 kb
  [ -d /proc ] || { echo NA; return; }
  for pid in $(server_pids "$1"); do
    kb=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
    total=$((total + ${kb:-0}))
  done
  echo "$total"
}

wrk_command() {
  local conns=$1 mode=$2 url=$3 length=$4
  local wrk_threads=$((threads < conns ? threads : conns))  # wrk needs connections >= threads
  printf '%s\n' wrk "-t$wrk_threads" "-c$conns" "-d$length" --latency
  [ "$mode" = close ] && printf '%s\n' -H "Connection: close"
  echo "$url"
}

# One line of tab-separated fields from wrk's output: requests/s, p50 and p99 in ms, socket
# errors (total, connect, read, write, timeout), non-2xx responses, transfer in MB/s (wrk's MB
# are 2^20 bytes). "NA" for requests/s when wrk printed none.
parse_wrk_output() {
  awk '
    function ms(text,   number, unit) {
      number = text + 0; unit = text; sub(/^[0-9.]+/, "", unit)
      if (unit == "us") return number / 1000
      if (unit == "ms") return number
      if (unit == "s") return number * 1000
      if (unit == "m") return number * 60000
      if (unit == "h") return number * 3600000
      return "NA"
    }
    function megabytes(text,   number, unit) {
      number = text + 0; unit = text; sub(/^[0-9.]+/, "", unit)
      if (unit == "B") return number / 1048576
      if (unit == "KB") return number / 1024
      if (unit == "MB") return number
      if (unit == "GB") return number * 1024
      if (unit == "TB") return number * 1048576
      return "NA"
    }
    function number(value) { return value == "NA" ? value : sprintf("%.4f", value) }
    BEGIN { rps = "NA"; p50 = p99 = mbps = "NA"; connect = read = write = timeout = non2xx = 0 }
    /Latency Distribution/ { in_distribution = 1; next }
    in_distribution && $1 == "50%" { p50 = ms($2) }
    in_distribution && $1 == "99%" { p99 = ms($2); in_distribution = 0 }
    /^ *Socket errors:/ { connect = $4 + 0; read = $6 + 0; write = $8 + 0; timeout = $10 + 0 }
    /^ *Non-2xx or 3xx responses:/ { non2xx = $NF + 0 }
    /^Requests\/sec:/ { rps = $2 + 0 }
    /^Transfer\/sec:/ { mbps = megabytes($2) }
    END {
      printf "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", number(rps), number(p50), number(p99),
        connect + read + write + timeout, connect, read, write, timeout, non2xx, number(mbps)
    }' "$1"
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
  case $1 in
    keep-alive | churn)
      local mode=keep-alive
      [ "$1" = churn ] && mode=close
      row main "$connections" "$mode" main main
      row main_async "$connections" "$mode" main_async main_async
      row caddy "$connections" "$mode" Caddy Caddy
      if nginx_available; then row nginx "$connections" "$mode" nginx nginx; fi
      ;;
    ladder)
      row main "$connections" keep-alive "1. main (blocking)" "1. main"
      row step_group "$connections" keep-alive "2. + thread group" "2. thread group"
      row step_keepalive "$connections" keep-alive "3. + keep-alive" "3. keep-alive"
      row step_buffers "$connections" keep-alive "4. + 4096-byte buffers" "4. 4096 B buffers"
      row main_async "$connections" keep-alive "5. - logging (main_async)" "5. no logging"
      row caddy "$connections" keep-alive "Caddy (reference)" "Caddy"
      ;;
    buffers)
      row buffer_1024 "$connections" keep-alive "main_async --buffer-size 1024" "1024 B"
      row main_async "$connections" keep-alive "main_async (4096, as shipped)" "4096 B"
      row buffer_8192 "$connections" keep-alive "main_async --buffer-size 8192" "8192 B"
      ;;
    scaling)
      local conns
      for conns in $(scaling_levels); do
        row main_async "$conns" keep-alive main_async main_async
        row caddy "$conns" keep-alive Caddy Caddy
        if nginx_available; then row nginx "$conns" keep-alive nginx nginx; fi
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
    scaling) echo "Scaling: connections $(scaling_levels | tr ' ' ',' | sed 's/,/, /g')" ;;
  esac
}

scaling_levels() {
  if $big; then echo "$SCALING_CONNECTIONS $BIG_CONNECTIONS"; else echo "$SCALING_CONNECTIONS"; fi
}

selected_scenarios() {
  local scenario
  for scenario in ${ALL_SCENARIOS//,/ }; do
    [[ ,$scenarios, == *,"$scenario",* ]] && echo "$scenario"
  done
  return 0
}

row_count() {
  local scenario total=0
  for scenario in $(selected_scenarios); do
    total=$((total + $(scenario_rows "$scenario" | wc -l)))
  done
  echo "$total"
}

estimated_seconds() {
  local rows servers=0 scenario
  rows=$(row_count)
  for scenario in $(selected_scenarios); do
    servers=$((servers + $(scenario_rows "$scenario" | cut -f1 | sort -u | wc -l)))
  done
  echo $((rows * (rounds * $(seconds_of "$duration") + $(seconds_of "$warmup")) + servers * SERVER_START_SECONDS))
}

describe_estimate() {
  local seconds
  seconds=$(estimated_seconds)
  echo "$(row_count) server rows x ($rounds $(plural "$rounds" round) x $duration + $warmup warm-up)," \
    "about $((seconds / 60)) min $((seconds % 60)) s"
}

# The most wrk connections of the given scenarios.
most_connections() {
  local scenario
  for scenario in "$@"; do scenario_rows "$scenario" | cut -f2; done | sort -n | tail -n 1
}

plural() {
  if [ "$1" -eq 1 ]; then echo "$2"; else echo "${2}s"; fi
}

# Each connection is a descriptor in wrk and in the server; at -c1000 the usual 1024 is too few.
raise_open_files_limit() {
  local wanted soft hard
  # shellcheck disable=SC2046 # one scenario per word
  wanted=$(($(most_connections $(selected_scenarios)) + 1024))
  soft=$(ulimit -Sn) hard=$(ulimit -Hn)
  if [ "$soft" = unlimited ] || [ "$soft" -ge "$wanted" ]; then
    return 0
  elif [ "$hard" = unlimited ] || [ "$hard" -ge "$wanted" ]; then
    ulimit -Sn "$wanted"
  elif ! ulimit -n "$wanted" 2>/dev/null; then
    ulimit -Sn "$hard"
    notes+=("ulimit -n could only be raised to $hard; runs with more connections than that may show socket errors.")
  fi
}

print_plan() {
  local scenario id conns mode command=()
  echo "Plan: $(describe_estimate)"
  echo
  for scenario in $(selected_scenarios); do
    echo "## $(scenario_title "$scenario")"
    echo "servers, started for the scenario and kept running through its $rounds $(plural "$rounds" round):"
    while IFS= read -r id; do
      mapfile -t command < <(server_command "$id" DIR)
      echo "  $id: $(shell_words "${command[@]}")"
    done < <(scenario_rows "$scenario" | cut -f1 | awk '!seen[$0]++')
    echo "round 1 in this order, each later round starting one row later (after one $warmup warm-up run each):"
    while IFS=$'\t' read -r id conns mode _; do
      mapfile -t command < <(wrk_command "$conns" "$mode" "URL_OF_$id" "$duration")
      echo "  $(shell_words "${command[@]}")"
    done < <(scenario_rows "$scenario")
    echo
  done
  nginx_available || echo "nginx is not installed yet: the real run installs it, as it does wrk and caddy."
}

# One measured wrk run of one row. Appends a line to raw.tsv: scenario, row, round, server id,
# connections, requests/s, p50 ms, p99 ms, socket errors (total, connect, read, write, timeout),
# non-2xx, MB/s, peak RSS kB.
measure_row() {
  local scenario=$1 row=$2 round=$3 id=$4 conns=$5 mode=$6 short=$7
  local wrk=() output="$work_dir/wrk-$scenario-$row-$round.txt" result rss
  mapfile -t wrk < <(wrk_command "$conns" "$mode" "${SERVER_URL[$id]}" "$duration")
  reset_peak_rss "${SERVER_PID[$id]}"
  "${wrk[@]}" >"$output" 2>&1 || true
  kill -0 "${SERVER_PID[$id]}" 2>/dev/null || server_failed "$id" "exited during the $scenario scenario"
  rss=$(peak_rss_kb "${SERVER_PID[$id]}")
  result=$(parse_wrk_output "$output")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$row" "$round" "$id" "$conns" "$result" "$rss" >>"$work_dir/raw.tsv"
  if [[ $result == NA* ]]; then
    echo "bench.sh: wrk printed no result for $id; its output:" >&2
    cat "$output" >&2
  fi
  report_progress "$scenario" "$round" "$short" "$conns" "$result"
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

# One line on stderr per measured run, e.g. "churn  2/3  main_async  -c100  41234 req/s  p99 3.10 ms".
report_progress() {
  local scenario=$1 round=$2 short=$3 conns=$4 result=$5
  awk -F '\t' -v prefix="$(printf '  %-10s %s/%s  %-18s -c%-5s' "$scenario" "$round" "$rounds" "$short" "$conns")" '
    { printf "%s %8s req/s  p99 %s ms  socket errors %d\n", prefix,
        $1 == "NA" ? "failed" : sprintf("%.0f", $1), $3 == "NA" ? "n/a" : sprintf("%.2f", $3), $4 }' <<<"$result" >&2
}

# ---- Report ----

# Medians per row over its rounds, and requests/s as a ratio to Caddy's row with the same
# connections in the same scenario. One line per row:
# scenario, row, id, connections, mode, label, short, runs, requests/s, p50, p99, socket errors,
# non-2xx, MB/s, peak RSS kB, ratio to Caddy.
summarise_rows() {
  awk -F '\t' -v OFS='\t' '
    function median(list,   values, n, i, j, swap) {
      n = split(list, values, " ")
      if (n == 0) return "NA"
      for (i = 2; i <= n; i++)
        for (j = i; j > 1 && values[j - 1] + 0 > values[j] + 0; j--) {
          swap = values[j]; values[j] = values[j - 1]; values[j - 1] = swap
        }
      return n % 2 ? values[(n + 1) / 2] : (values[n / 2] + values[n / 2 + 1]) / 2
    }
    BEGIN { OFMT = CONVFMT = "%.4f" }  # not %.6g: 1234567 requests would print as 1.23457e+06
    FILENAME ~ /rows.tsv$/ { key = $1 SUBSEP $2; order[++rows] = key; row[key] = $0; next }
    $6 == "NA" { next }
    {
      key = $1 SUBSEP $2; runs[key]++
      rps[key] = rps[key] " " $6; p50[key] = p50[key] " " $7; p99[key] = p99[key] " " $8
      errors[key] = errors[key] " " $9; non2xx[key] = non2xx[key] " " $14; mbps[key] = mbps[key] " " $15
      if ($16 != "NA") rss[key] = rss[key] " " $16
    }
    END {
      for (i = 1; i <= rows; i++) {
        key = order[i]; split(row[key], field, "\t")
        median_rps[key] = median(rps[key])
        if (field[3] == "caddy") caddy[field[1] SUBSEP field[4]] = median_rps[key]
      }
      for (i = 1; i <= rows; i++) {
        key = order[i]; split(row[key], field, "\t")
        reference = caddy[field[1] SUBSEP field[4]]
        ratio = (reference != "" && reference != "NA" && median_rps[key] != "NA" && reference > 0) \
          ? median_rps[key] / reference : "NA"
        print row[key], runs[key] + 0, median_rps[key], median(p50[key]), median(p99[key]),
          median(errors[key]), median(non2xx[key]), median(mbps[key]), median(rss[key]), ratio
      }
    }' "$work_dir/rows.tsv" "$work_dir/raw.tsv"
}

# The Markdown table of one scenario from summarise_rows' lines.
summary_table() {
  awk -F '\t' -v scenario="$1" '
    function thousands(n,   text, out) {
      if (n == "NA") return "failed"
      text = sprintf("%.0f", n); out = ""
      while (length(text) > 3) { out = "," substr(text, length(text) - 2) out; text = substr(text, 1, length(text) - 3) }
      return text out
    }
    function fixed(n, format) { return n == "NA" ? "n/a" : sprintf(format, n) }
    function count(n) { return n == "NA" ? "n/a" : thousands(n) }
    function mebibytes(kb) { return kb == "NA" ? "n/a" : sprintf("%.1f MiB", kb / 1024) }
    BEGIN {
      connections = scenario == "scaling"
      printf "| %s |%s Requests/s | vs Caddy | p50 | p99 | Socket errors | Non-2xx | Transfer/s | Peak RSS |\n",
        scenario == "ladder" ? "Step" : "Server", connections ? " Connections |" : ""
      printf "| --- |%s ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n", connections ? " ---: |" : ""
    }
    $1 == scenario {
      printf "| %s |%s %s | %s | %s | %s | %s | %s | %s | %s |\n", $6,
        connections ? " " thousands($4) " |" : "", thousands($9), fixed($16, "%.2fx"),
        fixed($10, "%.2f ms"), fixed($11, "%.2f ms"), count($12), count($13),
        fixed($14, "%.2f MB/s"), mebibytes($15)
    }' "$work_dir/summary.tsv"
}

# Every measured run, for whoever wants to check a median.
raw_table() {
  echo "| Scenario | Server | Connections | Round | Requests/s | p50 ms | p99 ms | Socket errors (connect/read/write/timeout) | Non-2xx | MB/s | Peak RSS kB |"
  echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |"
  awk -F '\t' '
    function fixed(n) { return n == "NA" ? "n/a" : sprintf("%.2f", n) }
    { printf "| %s | %s | %s | %s | %s | %s | %s | %d (%d/%d/%d/%d) | %d | %s | %s |\n",
        $1, $4, $5, $3, $6 == "NA" ? "failed" : sprintf("%.0f", $6), fixed($7), fixed($8),
        $9, $10, $11, $12, $13, $14, fixed($15), $16 }' "$work_dir/raw.tsv"
}

first_line() {
  "$@" 2>&1 | head -n 1 || true
}

cpu_model() {
  if [ -r /proc/cpuinfo ] && grep -q '^model name' /proc/cpuinfo; then
    sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1
  elif command -v lscpu >/dev/null 2>&1; then
    lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1
  else
    sysctl -n machdep.cpu.brand_string 2>/dev/null || echo unknown
  fi
}

# Online CPUs, and how many of them are hyperthreads of one core when lscpu says so.
cpu_count() {
  local online per_core=""
  online=$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc 2>/dev/null || echo unknown)
  if command -v lscpu >/dev/null 2>&1; then
    per_core=$(lscpu | sed -n 's/^Thread(s) per core:[[:space:]]*//p')
  fi
  echo "$online online${per_core:+ ($per_core $(plural "$per_core" thread) per core)}"
}

memory_total() {
  awk '/^MemTotal:/ { printf "%.1f GiB\n", $2 / 1048576 }' /proc/meminfo 2>/dev/null || echo unknown
}

source_version() {
  local commit changed
  commit=$(git rev-parse --short HEAD 2>/dev/null) || { echo "not a git checkout"; return; }
  changed=$(git status --porcelain -- main.cpp main_async.cpp Makefile | awk '{ print $2 }' | tr '\n' ' ')
  echo "$commit${changed:+ with uncommitted changes to ${changed% }}"
}

machine_table() {
  local compiler=${CXX:-g++}
  echo "| | |"
  echo "| --- | --- |"
  echo "| CPU | $(cpu_model) |"
  echo "| CPUs | $(cpu_count) |"
  echo "| Memory | $(memory_total) |"
  echo "| Kernel | $(uname -sr) |"
  echo "| Compiler | $(first_line "$compiler" --version) |"
  echo "| Build | \`$(make -n -B main_async 2>/dev/null | grep -- '-o' | head -n 1)\` |"
  echo "| Source | $(source_version) |"
  echo "| wrk | $(first_line wrk -v | sed 's/ Copyright.*//') |"
  echo "| Caddy | $(first_line caddy version) |"
  if nginx_available; then
    echo "| nginx | $(first_line "$(nginx_binary)" -v | sed 's/^nginx version: //') |"
  else
    echo "| nginx | not installed |"
  fi
  echo "| Open files (ulimit -n) | $(ulimit -n) |"
  echo "| Load average at start | $load_at_start |"
}

load_average() {
  cut -d ' ' -f 1-3 /proc/loadavg 2>/dev/null || uptime | sed 's/.*load averages*: //'
}

method_text() {
  cat <<EOF
Each scenario starts its servers once, on their own loopback ports, and keeps them running
until its last round. Every server first gets one $warmup wrk run that is not measured. Then the
servers take turns: round 1 runs wrk against each of them in order, round 2 again starting one
server later (A B C, then B C A, then C A B), and so on for $rounds $(plural "$rounds" round), so
that a machine that gets busier slows every server alike. Each number below is
the median over the rounds; "vs Caddy" is a server's median requests/s divided by Caddy's in
the same scenario and at the same connections.

- wrk runs on the same machine as the servers and competes with them for the CPUs, as in the
  tutorial; only loopback traffic is measured, no network.
- wrk's latencies are normalised to milliseconds; Transfer/s is in wrk's MB (2^20 bytes).
- Socket errors are wrk's connect + read + write + timeout errors (a request slower than wrk's
  2 s timeout counts as a timeout); the last table breaks them down per run.
- Peak RSS is the server's resident memory high-water mark during the measured run: before each
  run the mark is reset (\`echo 5 > /proc/PID/clear_refs\`), after it \`VmHWM\` is read from
  \`/proc/PID/status\`. For nginx it is the sum over the master and its workers, which counts the
  pages they share (code, libraries) once per process.
- Servers that log each request (main, and main_async with --log-requests) write that log to
  /dev/null: the cost measured is formatting the line and the write(2), not a terminal or a disk.
- main_async runs with its defaults (4096-byte buffers, --max-connections 10000). Caddy is
  \`caddy respond\` with its defaults. nginx runs with \`worker_processes auto\`, \`access_log off\`
  and \`worker_connections\` sized to the scenario (its configuration is below), otherwise with its
  defaults: among them, it closes a keep-alive connection after 1000 requests.
EOF
  if $rss_reset_failed; then
    echo "- The high-water mark could not be reset here, so Peak RSS is the peak since the server started."
  fi
  local note
  for note in "${notes[@]}"; do echo "- $note"; done
}

ladder_text() {
  cat <<'EOF'
Each row is a step of the tutorial, rebuilt from the shipped binaries by flags:

1. `./main`: blocking, one connection at a time, one request per connection, logs each request.
2. `./main_async --no-keepalive --buffer-size 1024 --log-requests`: adds the thread group only.
3. `./main_async --buffer-size 1024 --log-requests`: adds the keep-alive loop.
4. `./main_async --log-requests`: 4096-byte buffers instead of 1024.
5. `./main_async`: no per-request logging. This is main_async as shipped.

EOF
}

# Charts with gnuplot: requests/s per server and scenario, and one bar per step of the ladder.
# Sets charts (the PNG files drawn) and chart_note (why there are none).
draw_charts() {
  local stem=$1
  charts=() chart_note=""
  if ! command -v gnuplot >/dev/null 2>&1; then
    chart_note="Chart skipped: gnuplot is not installed (\`apt-get install gnuplot-nox\` adds it)."
    return 0
  fi
  local terminal=pngcairo
  gnuplot -e 'set terminal pngcairo' >/dev/null 2>&1 || terminal=png
  chart_data_by_scenario >"$work_dir/scenarios.dat"
  awk -F '\t' -v OFS='\t' '$1 == "ladder" { print $7, ($9 == "NA" ? "-" : $9) }' "$work_dir/summary.tsv" >"$work_dir/ladder.dat"
  local kind
  for kind in scenarios ladder; do
    [ -s "$work_dir/$kind.dat" ] || continue
    local png="$stem.png"
    [ "$kind" = ladder ] && png="$stem-ladder.png"
    if gnuplot -e "terminal='$terminal'; data='$work_dir/$kind.dat'; output='$png'; kind='$kind'" bench/charts.gp >&2; then
      charts+=("$png")
    else
      chart_note="Chart skipped: gnuplot failed to draw $png."
    fi
  done
}

# For the grouped chart: a header "scenario SERVER...", then one line per scenario (and per
# connections for scaling) with each server's median requests/s, "-" where it did not run.
chart_data_by_scenario() {
  awk -F '\t' -v OFS='\t' '
    $1 != "ladder" {
      group = $1 == "scaling" ? "scaling -c" $4 : $1
      if (!(group in seen)) { seen[group] = 1; groups[++ngroups] = group }
      if (!($3 in known)) { known[$3] = 1; servers[++nservers] = $3; names[$3] = $7 }
      value[group, $3] = $9
    }
    END {
      if (ngroups == 0) exit
      line = "scenario"
      for (s = 1; s <= nservers; s++) line = line OFS names[servers[s]]
      print line
      for (g = 1; g <= ngroups; g++) {
        line = groups[g]
        for (s = 1; s <= nservers; s++) {
          v = value[groups[g], servers[s]]
          line = line OFS ((v == "" || v == "NA") ? "-" : v)
        }
        print line
      }
    }' "$work_dir/summary.tsv"
}

commands_section() {
  echo "Servers (each scenario starts its own; \`DIR\` is a temporary directory of the run):"
  echo
  echo '```sh'
  awk -F '\t' '!seen[$3]++ { print $3 }' "$work_dir/servers.tsv"
  echo '```'
  if cut -f2 "$work_dir/servers.tsv" | grep -qx nginx; then
    echo
    echo "nginx's configuration (\`PORT\` is a free port picked by bench.sh, \`CONNECTIONS\` the"
    echo "scenario's most wrk connections + 1024: nginx allocates its connection table up front):"
    echo
    echo '```nginx'
    nginx_config DIR PORT CONNECTIONS | sed 1d
    echo '```'
  fi
  echo
  echo "wrk, in the order the servers take turns in each round; the warm-up run before round 1"
  echo "is the same with -d$warmup. Each port is the one the server got for that scenario."
  echo
  echo '```sh'
  awk -F '\t' '$1 != scenario { if (NR > 1) print ""; print "# " $1; scenario = $1 } { print $2 }' "$work_dir/commands.tsv"
  echo '```'
}

chart_section() {
  local chart
  for chart in "${charts[@]}"; do
    case $chart in
      *-ladder.png) echo "![Requests/s per step of the ladder]($(basename "$chart"))" ;;
      *) echo "![Requests/s per server and scenario]($(basename "$chart"))" ;;
    esac
    echo
  done
  [ -z "$chart_note" ] || echo "$chart_note"
}

# The report: the machine and the commands first, then how, the results, the chart, every run.
write_report() {
  local invocation=$1 scenario
  echo "# wrk benchmark: $(date +%Y-%m-%d) on $(host_name)"
  echo
  echo "Made by \`$invocation\` in $(($(date +%s) - started_at)) s" \
    "($rounds $(plural "$rounds" round) of $duration per server and scenario)."
  echo
  echo "## The machine"
  echo
  machine_table
  echo
  echo "## The commands"
  echo
  commands_section
  echo
  echo "## How it was measured"
  echo
  method_text
  for scenario in $(selected_scenarios); do
    echo
    echo "## $(scenario_title "$scenario")"
    echo
    [ "$scenario" = ladder ] && ladder_text
    summary_table "$scenario"
  done
  echo
  echo "## Chart"
  echo
  chart_section
  echo
  echo "## Every run"
  echo
  raw_table
}

host_name() {
  uname -n | cut -d . -f 1
}

# ---- main ----

work_dir=""
notes=()
rss_reset_failed=false
nginx_connections=1024
charts=()
chart_note=""
started_at=$(date +%s)
load_at_start=""

clean_up() {
  stop_all_servers
  [ -z "$work_dir" ] || rm -rf "$work_dir"
}

main() {
  local invocation
  invocation=$(shell_words ./bench.sh "$@")
  parse_options "$@"
  apply_defaults
  if $dry_run; then
    print_plan
    return 0
  fi
  ensure_tools
  make >&2
  raise_open_files_limit
  work_dir=$(mktemp -d "${TMPDIR:-/tmp}/bench.XXXXXX")
  trap clean_up EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  touch "$work_dir/rows.tsv" "$work_dir/raw.tsv" "$work_dir/servers.tsv" "$work_dir/commands.tsv"
  load_at_start=$(load_average)
  echo "bench.sh: $(describe_estimate)" >&2

  local scenario
  for scenario in $(selected_scenarios); do run_scenario "$scenario"; done

  summarise_rows >"$work_dir/summary.tsv"
  mkdir -p "$out_dir"
  local stem
  stem="$out_dir/$(date +%Y-%m-%d)-$(host_name)"
  $quick && stem+="-quick"
  draw_charts "$stem"
  write_report "$invocation" >"$stem.md"
  cat "$stem.md"
  echo "bench.sh: report written to $stem.md" >&2
}

main "$@"
