#!/usr/bin/env bash
# bench/report.sh: the Markdown report of one bench.sh run, from the files bench.sh wrote.
#
#   bench/report.sh WORK_DIR OUT_DIR [quick]
#
# writes OUT_DIR/<date>-<host>[-quick].md, or -2.md, -3.md, ... when that exists already (a
# second run on the same day keeps the first), with charts beside it when gnuplot is installed,
# and prints it. bench.sh calls it at the end of every run, also of one that stopped part-way
# (it then says so at the top). WORK_DIR holds:
#   meta.tsv       key, value: the invocation, start and end times, the quiet checks, notes
#   scenarios.tsv  each scenario that started, with its title
#   rows.tsv       each row of a scenario (see bench/summarise.awk), runs.tsv each measured run
#   idle.tsv       each round of each server in the idle scenario (see bench.sh's measure_idle)
#   servers.tsv, commands.tsv, nginx.conf.sample: the commands as run, for the report
#   failure        why the run stopped, when it did not finish
# It runs on the machine that was measured, right after the run, and asks it for the versions.
set -euo pipefail
cd "$(dirname "$0")/.."

# The Zig tutorial's headline (https://doprz.dev/blog/posts/zig-http-server/): main-async.zig
# against Caddy on its author's machine, with `wrk -t4 -c100 -d10s`.
readonly SEED_ZIG=448000 SEED_CADDY=443000

usage() {
  echo "usage: bench/report.sh WORK_DIR OUT_DIR [quick]" >&2
  exit 2
}

if [ "$#" -lt 2 ] || [ "$#" -gt 3 ] || [ ! -d "$1" ]; then usage; fi
readonly work_dir=$1 out_dir=$2 suffix=${3:+-$3}
stem=""  # the report's path without .md: chosen in main

declare -A meta=()
while IFS=$'\t' read -r key value; do meta[$key]=$value; done < <(grep -v '^note' "$work_dir/meta.tsv")

plural() {
  if [ "$1" -eq 1 ]; then echo "$2"; else echo "${2}s"; fi
}

# ---- Numbers ----

# The awk functions every table shares: numbers as the report prints them.
readonly FORMATS='
  function thousands(n,   text, out) {
    if (n == "NA") return "n/a"
    text = sprintf("%.0f", n); out = ""
    while (length(text) > 3) { out = "," substr(text, length(text) - 2) out; text = substr(text, 1, length(text) - 3) }
    return text out
  }
  function fixed(n, format) { return n == "NA" ? "n/a" : sprintf(format, n) }
  function spread(median, low, high, format) {  # "73,297 (64,318-81,276)"
    if (median == "NA") return "n/a"
    if (format == "") return thousands(median) " (" thousands(low) "–" thousands(high) ")"
    return sprintf(format, median) " (" sprintf(format, low) "–" sprintf(format, high) ")"
  }
  function mebibytes(kb) { return kb == "NA" ? "n/a" : sprintf("%.1f MiB", kb / 1024) }
'

summarise() {
  awk -F '\t' -v OFS='\t' -f bench/summarise.awk "$work_dir/rows.tsv" "$work_dir/runs.tsv" >"$work_dir/summary.tsv"
}

run_count() { wc -l <"$work_dir/runs.tsv" | tr -d ' '; }
busy_count() { awk -F '\t' '$21 == "yes"' "$work_dir/runs.tsv" | wc -l | tr -d ' '; }

# ---- The summary ----

incomplete_text() {
  local failed
  failed=$(awk -F '\t' '$6 == "NA"' "$work_dir/runs.tsv" | wc -l | tr -d ' ')
  if [ "$failed" -gt 0 ]; then
    echo "**$failed of $(run_count) runs had no result from wrk** (\"failed\" in \"Every run\"): the tables leave them out."
    echo
  fi
  [ -s "$work_dir/failure" ] || return 0
  echo "**Incomplete.** The run stopped: $(head -n 1 "$work_dir/failure"). The tables below hold"
  echo "the $(run_count) runs it had measured by then; what it did not reach is missing."
  echo
}

# A share of all CPU time (%) as CPUs of this machine: "50.0" on 2 CPUs is "1.00".
cpus_of() {
  awk -v share="$1" -v cpus="$(nproc)" 'BEGIN { printf "%.2f", share * cpus / 100 }'
}

# A quiet check's line in meta.tsv: load averages, others %, steal %, busy. Its load average
# tells a busy machine only before the first run: after it, it still counts our own threads.
quiet_text() {
  local when=$1 load others steal busy verdict=quiet
  IFS=$'\t' read -r load others steal busy <<<"${meta[$2]:-}"
  [ -n "$load" ] || return 0
  [ "$busy" = no ] || verdict="**busy**"
  if [ "$2" = quiet_before ] && awk -v load="${load%% *}" -v cpus="$(nproc)" 'BEGIN { exit !(load > cpus) }'; then
    verdict="**busier than its $(nproc) CPUs** (1-minute load average ${load%% *})"
  fi
  echo "- $when, for ${meta[quiet_seconds]} s with nothing of ours running: other programs used"
  echo "  $(cpus_of "$others") of the $(nproc) CPUs and steal $(cpus_of "$steal"); load average $load. The machine was $verdict."
}

load_summary() {
  local runs busy
  runs=$(run_count) busy=$(busy_count)
  quiet_text "Before the first server started" quiet_before
  if [ "$runs" -eq 0 ]; then
    echo "- No wrk run was measured."
  elif [ "$busy" -eq 0 ]; then
    awk -F '\t' -v cpus="$(nproc)" '{ if ($19 + $20 > most) most = $19 + $20 } END {
      printf "- During the runs: none of the %d was flagged busy; other programs and steal took at most\n", NR
      printf "  %.2f of the %d CPUs during any of them.\n", most * cpus / 100, cpus }' "$work_dir/runs.tsv"
  else
    echo "- During the runs: **$busy of $runs were flagged BUSY** (see \"Every run\"): other programs and"
    echo "  steal took ${meta[busy_percent]}% of the CPU time or more while wrk ran, up to" \
      "$(cpus_of "$(awk -F '\t' '{ if ($19 + $20 > most) most = $19 + $20 } END { print most }' "$work_dir/runs.tsv")")" \
      "of the $(nproc) CPUs. In: $(awk -F '\t' '$21 == "yes" && !seen[$1]++ { printf "%s%s", sep, $1; sep = ", " }' "$work_dir/runs.tsv")."
    echo "  On a busy machine the ratios move too, not only requests/s (see \"How it was measured\")."
  fi
  quiet_text "After the last run" quiet_after
}

# The seed's headline beside each server's ratio to Caddy in this run's keep-alive scenario.
seed_table() {
  grep -q '^keep-alive	' "$work_dir/summary.tsv" || return 0
  echo "The tutorial this project follows measured its Zig server at Caddy's level; the same"
  echo "comparison in this run (keep-alive, median over the rounds, and the range of the ratio"
  echo "taken round by round):"
  echo
  echo "| Server | Requests/s | vs Caddy | Where |"
  echo "| --- | ---: | ---: | --- |"
  awk -v zig=$SEED_ZIG -v caddy=$SEED_CADDY 'BEGIN {
    printf "| Zig tutorial, main-async.zig | %dk (Caddy %dk) | %.2fx | its author'"'"'s machine, wrk -t4 -c100 -d10s |\n",
      zig / 1000, caddy / 1000, zig / caddy }'
  awk -F '\t' -v where="this run: $(nproc) CPUs, wrk on the same machine" "$FORMATS"'
    $1 == "keep-alive" {
      printf "| %s | %s | %s | %s |\n", $6, thousands($9), $3 == "caddy" ? "1.00x" : spread($12, $13, $14, "%.2fx"), where }' "$work_dir/summary.tsv"
  echo
  echo "Requests/s belong to one machine; the ratios are what carries over, and only roughly."
}

# ---- The tables ----

scenario_table() {
  local usage=0
  [[ $1 != keep-alive && $1 != scaling ]] || usage=1
  awk -F '\t' -v scenario="$1" -v usage="$usage" "$FORMATS"'
    BEGIN {
      connections = scenario == "scaling"
      printf "| %s |%s Requests/s (min–max) | vs Caddy (per round) | p50 ms | p99 ms | Socket errors | Non-2xx | Peak RSS |%s Busy runs |\n",
        scenario == "ladder" ? "Step" : "Server", connections ? " Connections |" : "",
        usage ? " Context switches per request | CPU µs per request |" : ""
      printf "| --- |%s ---: | ---: | ---: | ---: | ---: | ---: | ---: |%s ---: |\n", connections ? " ---: |" : "",
        usage ? " ---: | ---: |" : ""
    }
    $1 == scenario {
      printf "| %s |%s %s | %s | %s | %s | %s | %s | %s |%s %s of %d |\n", $6,
        connections ? " " thousands($4) " |" : "", spread($9, $10, $11), $3 == "caddy" ? "1.00x" : spread($12, $13, $14, "%.2fx"),
        spread($15, $16, $17, "%.2f"), spread($18, $19, $20, "%.2f"), thousands($21), thousands($22),
        mebibytes($24), usage ? " " spread($26, $27, $28, "%.2f") ($32 > 0 ? " ‡" : "") " | " spread($29, $30, $31, "%.1f") " |" : "",
        $25, $8
    }' "$work_dir/summary.tsv"
  if [ "$usage" = 1 ] && awk -F '\t' -v scenario="$1" '$1 == scenario && $32 > 0 { found = 1 } END { exit !found }' \
    "$work_dir/summary.tsv"; then
    echo
    echo "‡ Some of the server's threads ended while its switches were counted, and took their counts"
    echo "with them: the figure is a lower bound (\"Threads ended\" in \"Every run\")."
  fi
  return 0
}

# The idle scenario: per server, medians over the rounds (lowest and highest in brackets).
idle_table() {
  echo "| Server | Connections held (lowest round) | RSS before, MiB | RSS while held, MiB | Growth, MiB | Growth per connection, KiB | Still open after the reading (lowest round) | Seconds to open them |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  awk -F '\t' "$FORMATS"'
    function sorted(list, values,   n, i, j, swap) {
      n = split(list, values, " ")
      for (i = 2; i <= n; i++)
        for (j = i; j > 1 && values[j - 1] + 0 > values[j] + 0; j--) { swap = values[j]; values[j] = values[j - 1]; values[j - 1] = swap }
      return n
    }
    function median(list,   values, n) { n = sorted(list, values); return n % 2 ? values[(n + 1) / 2] : (values[n / 2] + values[n / 2 + 1]) / 2 }
    function low(list,   values) { sorted(list, values); return values[1] }
    function high(list,   values, n) { n = sorted(list, values); return values[n] }
    function mib(list) { return spread(median(list) / 1024, low(list) / 1024, high(list) / 1024, "%.1f") }
    !($3 in label) { order[++servers] = $3; label[$3] = $4; least_held[$3] = $6; least_open[$3] = $11 }
    {
      before[$3] = before[$3] " " $9; after[$3] = after[$3] " " $10; growth[$3] = growth[$3] " " ($10 - $9)
      if ($6 > 0) per[$3] = per[$3] " " ($10 - $9) / $6
      seconds[$3] = seconds[$3] " " $8
      if ($6 < least_held[$3]) least_held[$3] = $6
      if ($11 == "NA" || $11 < least_open[$3]) least_open[$3] = $11
      wanted[$3] = $5
    }
    END {
      for (i = 1; i <= servers; i++) {
        r = order[i]
        printf "| %s | %s of %s | %s | %s | %s | %s | %s | %s |\n", label[r], thousands(least_held[r]), thousands(wanted[r]),
          mib(before[r]), mib(after[r]), mib(growth[r]),
          per[r] == "" ? "n/a" : spread(median(per[r]), low(per[r]), high(per[r]), "%.1f"),
          thousands(least_open[r]), spread(median(seconds[r]), low(seconds[r]), high(seconds[r]), "%.1f")
      }
    }' "$work_dir/idle.tsv"
}

idle_text() {
  cat <<EOF
Each server is started afresh for each round, answers bench.sh's one readiness request, and has its
resident memory (VmRSS, summed over its processes) read. Then \`bench/idle_client.py\` opens the
connections, at most 100 at a time still waiting for their answer; each sends one GET, reads the
response and falls silent. Once all are answered the memory is read again, and the client looks
whether the server has closed any of them meanwhile ("still open") before it closes them all.
"Growth" is the second reading less the first; "per connection" divides it by the connections held.
main_async and main_epoll run with \`--max-connections\` above the count and a \`--timeout-ms\`
long enough not to close an idle connection during the round (their commands are above); nginx
keeps idle connections 75 s (\`keepalive_timeout\`), Caddy 5 minutes (its default idle timeout).
For nginx the sum counts its master and its workers, each with its own copy of the pages they share.
RSS is the server's own memory: the kernel's socket buffers for the connections are not in it.

EOF
}

# Every round of the idle scenario.
every_idle_round_table() {
  echo "| Server | Round | Held | Failed | Seconds to open | RSS before kB | RSS while held kB | Still open |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  awk -F '\t' '{ printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", $4, $2, $6, $7, $8, $9, $10, $11 }' \
    "$work_dir/idle.tsv"
}

ladder_text() {
  cat <<'EOF'
Each row is a step of the tutorial, rebuilt from the shipped binaries by flags:

1. `./main`: blocking, one connection at a time, one request per connection, logs each request.
2. `./main_async --no-keepalive --buffer-size 1024 --log-requests`: adds the thread group only.
3. `./main_async --buffer-size 1024 --log-requests`: adds the keep-alive loop.
4. `./main_async --log-requests`: 4096-byte buffers instead of 1024.
5. `./main_async`: no per-request logging. This is main_async as shipped.
6. `./main_epoll`: one epoll event loop per worker thread (a worker per CPU) instead of a thread
   per connection.

EOF
}

first_text() {
  cat <<'EOF'
`./first_server PORT` is chapter 2's server, tutorial/code/first_server.cpp as `make` builds it:
one connection at a time, one read, a fixed answer, close. Its answer has no `Connection: close`,
so wrk takes the connection to be kept alive, finds it closed when it reads for the next
response, counts a read error and connects again: expect about one socket error per request.
Requests/s counts complete responses only. main (one request per connection, then close, saying
so; each request logged to /dev/null) and main_async (keep-alive, a thread per connection) take
turns with it, round by round.

EOF
}

# Every measured run, for whoever wants to check a median or a flag.
every_run_table() {
  [ -s "$work_dir/runs.tsv" ] || return 0
  echo "| Scenario | Server | Connections | Round | Requests/s | p50 ms | p99 ms | Socket errors (connect/read/write/timeout) | Non-2xx | MB/s | Peak RSS kB | Load before → after | Others % | Steal % | Busy | Switches per request | CPU µs per request | Threads ended |"
  echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- | ---: | ---: | --- | ---: | ---: | ---: |"
  awk -F '\t' '
    function fixed(n, format) { return n == "NA" || n == "" ? "n/a" : sprintf(format == "" ? "%.2f" : format, n) }
    { printf "| %s | %s | %s | %s | %s | %s | %s | %d (%d/%d/%d/%d) | %d | %s | %s | %s → %s | %s | %s | %s | %s | %s | %s |\n",
        $1, $4, $5, $3, $6 == "NA" ? "failed" : sprintf("%.0f", $6), fixed($7), fixed($8),
        $9, $10, $11, $12, $13, $14, fixed($15), $16, $17, $18, $19, $20, $21 == "yes" ? "BUSY" : "",
        fixed($22), fixed($23, "%.1f"), fixed($24, "%d") }' "$work_dir/runs.tsv"
}

# ---- The machine and the method ----

# The first line a tool prints about itself, or "not installed" (a run without Caddy or nginx).
first_line() {
  if ! command -v "$1" >/dev/null 2>&1; then echo "not installed"; return 0; fi
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

source_version() {
  local commit changed
  commit=$(git rev-parse --short HEAD 2>/dev/null) || { echo "not a git checkout"; return; }
  changed=$(git status --porcelain -- main.cpp main_async.cpp tutorial/code/main_epoll.cpp tutorial/code/first_server.cpp Makefile | awk '{ print $2 }' | tr '\n' ' ')
  echo "$commit${changed:+ with uncommitted changes to ${changed% }}"
}

machine_table() {
  local compiler=${CXX:-g++} nginx
  nginx=$(command -v nginx || echo /usr/sbin/nginx)
  echo "| | |"
  echo "| --- | --- |"
  echo "| CPU | $(cpu_model) |"
  echo "| CPUs | $(cpu_count) |"
  echo "| Memory | $(awk '/^MemTotal:/ { printf "%.1f GiB\n", $2 / 1048576 }' /proc/meminfo 2>/dev/null || echo unknown) |"
  echo "| Kernel | $(uname -sr) |"
  echo "| Compiler | $(first_line "$compiler" --version) |"
  echo "| Build | \`$(make -n -B main_async 2>/dev/null | grep -- '-o' | head -n 1)\` |"
  echo "| Source | $(source_version) |"
  echo "| wrk | $(first_line wrk -v | sed 's/ Copyright.*//') |"
  echo "| Caddy | $(first_line caddy version) |"
  echo "| nginx | $(first_line "$nginx" -v | sed 's/^nginx version: //') |"
  echo "| Open files (ulimit -n) | $(ulimit -n) |"
  echo "| Load average before the run | $(cut -f 1 <<<"${meta[quiet_before]:-n/a}") |"
  if [ -n "${meta[pin_servers]}" ]; then
    echo "| CPUs (--pin) | servers on ${meta[pin_servers]}, wrk on ${meta[pin_wrk]} |"
  else
    echo "| CPUs (--pin) | not pinned: servers and wrk share every CPU |"
  fi
}

method_text() {
  local rounds=${meta[rounds]}
  cat <<EOF
Each scenario starts its servers once, on their own loopback ports, and keeps them running
until its last round. Every server first gets one ${meta[warmup]} wrk run that is not measured. Then the
servers take turns: round 1 runs wrk against each of them in order, round 2 again starting one
server later (A B C, then B C A, then C A B), and so on for $rounds $(plural "$rounds" round), so
that a machine that gets busier slows every server alike. Each figure below is the median over the
rounds, with the lowest and highest round in brackets; "vs Caddy" is a server's median requests/s
divided by Caddy's in the same scenario and at the same connections, and in brackets the lowest
and highest of that ratio taken round by round (a range above 1.00x: ahead of Caddy in every round).

- wrk runs on the same machine as the servers, as in the tutorial; only loopback traffic is
  measured, no network. Its counts come from its Lua \`done()\` hook (bench/wrk-report.lua),
  not from its text: requests/s, the p50 and p99 latencies (in milliseconds), errors, bytes.
- Socket errors are wrk's connect + read + write + timeout errors (a request slower than wrk's
  2 s timeout counts as a timeout), summed over the rounds; the last table breaks them down per run.
- Context switches and CPU time per request (keep-alive and scaling): bench.sh reads the server's
  threads' \`voluntary_ctxt_switches\` + \`nonvoluntary_ctxt_switches\` from
  \`/proc/PID/task/*/status\` and its CPU time (user + system, all threads) from \`/proc/PID/stat\`,
  for the server and its children (nginx's workers), twice during each run: ${meta[window_margin_percent]:-10}% of the run
  after wrk starts and ${meta[window_margin_percent]:-10}% before it ends. Not before and after the run, because the kernel
  keeps switches per thread and a thread's go with it: main_async's threads end with their
  connections, which wrk closes as it stops; in the middle of a keep-alive run every connection is
  open. The differences are divided by the requests in that window, wrk's requests/s over the whole
  run times the window's length. "Threads ended" in "Every run" counts the threads that ended
  within the window anyway; where it is not 0, that run's switches are a lower bound. The CPU time
  is the server's only, in microseconds; wrk's is not in it.
- Peak RSS is the server's resident memory high-water mark during a measured run, the highest of
  its rounds: before each run the mark is reset (\`echo 5 > /proc/PID/clear_refs\`), after it
  \`VmHWM\` is read from \`/proc/PID/status\`. For nginx it is the sum over the master and its
  workers, which counts the pages they share (code, libraries) once per process.
- How busy the machine was: around every run bench.sh reads /proc/stat (the CPU time of every
  CPU, steal included) and /proc/loadavg, and the CPU time of the server's processes and of wrk.
  "Others" is the CPU time that neither took, as a share of all CPU time during the run; "steal"
  is what the hypervisor gave to other virtual machines. The server and wrk can keep every CPU
  busy, so whatever else ran took its time from them: a run is flagged BUSY when others and steal
  together reach ${meta[busy_percent]}%. The 1-minute load average is kept too, but it counts the
  benchmark's own runnable threads (wrk's, and one per busy connection of main_async), so during
  the runs it is high whatever else runs; it tells a busy machine only before the first run.
- A busy machine moves the ratios, not only requests/s: the scheduler shares a CPU per runnable
  thread, so a server with many (main_async, one per busy connection) loses less of its time to a
  neighbour than one with few (Caddy's, nginx's two workers, main_epoll's one per CPU, main's
  one): on a busy machine main_async's ratios rise. The "Others %" column of "Every run" shows
  it, row by row.
- Servers that log each request (main, and main_async with --log-requests) write that log to
  /dev/null: the cost measured is formatting the line and the write(2), not a terminal or a disk.
- main_async runs with its defaults (4096-byte buffers, --max-connections 10000), and so does
  main_epoll (a worker thread per online CPU), outside the idle scenario. Caddy is
  \`caddy respond\` with its defaults. nginx runs with \`worker_processes auto\`, \`access_log off\`
  and \`worker_connections\` sized to the scenario (its configuration is above), otherwise with its
  defaults: among them, it closes a keep-alive connection after 1000 requests.
EOF
  if [ -n "${meta[pin_servers]}" ]; then
    cat <<EOF
- --pin: the servers ran on CPU ${meta[pin_servers]} and wrk on CPU ${meta[pin_wrk]} (\`taskset -c\`), so
  the two no longer took CPU time from each other, and the scheduler could not trade one's time for
  the other's. What it cannot show: with the servers on half the CPUs, nothing here says how a
  server uses several cores (nginx's workers and main_async's threads share theirs), and programs
  outside the benchmark still run on every CPU.
EOF
  fi
  [ -z "${meta[rss_reset_failed]:-}" ] ||
    echo "- The high-water mark could not be reset here, so Peak RSS is the peak since the server started."
  local note
  while IFS=$'\t' read -r _ note; do echo "- $note"; done < <(grep '^note' "$work_dir/meta.tsv" || true)
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
    cat "$work_dir/nginx.conf.sample"
    echo '```'
  fi
  echo
  echo "wrk, in the order the servers take turns in each round; the warm-up run before round 1"
  echo "is the same with -d${meta[warmup]}. Each port is the one the server got for that scenario."
  echo
  echo '```sh'
  awk -F '\t' '$1 != scenario { if (NR > 1) print ""; print "# " $1; scenario = $1 } { print $2 }' "$work_dir/commands.tsv"
  echo '```'
}

# ---- Charts ----

# bench/charts.sh draws them beside the report and prints the Markdown that shows them.
chart_section() {
  bench/charts.sh "$work_dir" "$stem"
}

# ---- The report ----

# A new file for every run: <date>-<host>[-quick], then -2, -3, ... on the same day.
choose_stem() {
  local base n=2
  base="$out_dir/$(date +%Y-%m-%d)-$(uname -n | cut -d . -f 1)$suffix"
  stem=$base
  while [ -e "$stem.md" ]; do stem="$base-$n" n=$((n + 1)); done
}

write_report() {
  summarise
  local title seconds
  title="# wrk benchmark: $(date +%Y-%m-%d) on $(uname -n | cut -d . -f 1)"
  [ ! -s "$work_dir/failure" ] || title+=" (incomplete)"
  echo "$title"
  echo
  seconds=$((${meta[ended]:-$(date +%s)} - meta[started]))
  echo "Made by \`${meta[invocation]}\` in $seconds s" \
    "(${meta[rounds]} $(plural "${meta[rounds]}" round) of ${meta[duration]} per server and scenario)."
  echo
  echo "## Summary"
  echo
  incomplete_text
  load_summary
  echo
  seed_table
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
  local scenario title
  while IFS=$'\t' read -r scenario title; do
    echo
    echo "## $title"
    echo
    case $scenario in
      idle) idle_text; idle_table ;;
      ladder) ladder_text; scenario_table "$scenario" ;;
      first) first_text; scenario_table "$scenario" ;;
      *) scenario_table "$scenario" ;;
    esac
  done <"$work_dir/scenarios.tsv"
  echo
  echo "## Charts"
  echo
  chart_section
  echo "## Every run"
  echo
  every_run_table
  if [ -s "$work_dir/idle.tsv" ]; then
    echo
    echo "Every round of the idle scenario:"
    echo
    every_idle_round_table
  fi
}

main() {
  mkdir -p "$out_dir"
  choose_stem
  write_report >"$stem.md" || { rm -f "$stem.md"; exit 1; }
  cat "$stem.md"
  [ ! -s "$work_dir/failure" ] || echo "bench.sh: the run did not finish; what it measured is in the report, marked incomplete" >&2
  echo "bench.sh: report written to $stem.md" >&2
}

main
