#!/usr/bin/env bash
# bench/load.sh: how busy the machine was while bench.sh measured, from /proc (Linux).
#
#   bench/load.sh snapshot [PID...]          one line: total busy steal load ours
#   bench/load.sh between BEFORE AFTER EXTRA one line: load-before load-after others% steal% busy
#   bench/load.sh threads PID...             "TIME_NS TICKS", then "TID SWITCHES" per thread
#
# A snapshot holds the CPU time of all CPUs from /proc/stat (all of it, the busy part, and the
# part the hypervisor stole for other virtual machines), the 1-minute load average, and the CPU
# time the given processes have used so far (all their threads). Times are in clock ticks.
#
# Between two snapshots, EXTRA more ticks count as ours (wrk's own, which it reports itself).
# "others" is the busy CPU time that was not ours, as a share of all CPU time; "steal" likewise.
# The server and wrk can keep every CPU busy, so whatever else ran took its time from them: the
# run is "busy" (yes/no) when others and steal together reach BUSY_PERCENT (default 10). A window
# shorter than 0.1 s (wrk failed at once) is too short to tell: NA.
#
# threads is what the given processes (a server and its children) have used so far: the time,
# their CPU time (all their threads, also those that ended), and each live thread's context
# switches, voluntary + nonvoluntary (the kernel keeps those per thread, so an ended thread's
# are gone). A process or thread that ends while it is read is left out.
set -euo pipefail

usage() {
  echo "usage: bench/load.sh snapshot [PID...] | between BEFORE AFTER EXTRA_TICKS | threads PID..." >&2
  exit 2
}

snapshot() {
  local _cpu user nice system idle iowait irq softirq steal load _rest ours=0 pid stat fields
  read -r _cpu user nice system idle iowait irq softirq steal _rest </proc/stat
  read -r load _rest </proc/loadavg
  for pid in "$@"; do
    { read -r stat <"/proc/$pid/stat"; } 2>/dev/null || continue  # gone: nothing more to count
    read -r -a fields <<<"${stat##*) }"  # after the command name, which may hold spaces
    ours=$((ours + fields[11] + fields[12]))  # utime and stime, fields 14 and 15
  done
  echo "$((user + nice + system + idle + iowait + irq + softirq + steal))" \
    "$((user + nice + system + irq + softirq)) $steal $load $ours"
}

between() {
  local total1 busy1 steal1 load1 ours1 total2 busy2 steal2 load2 ours2
  read -r total1 busy1 steal1 load1 ours1 <<<"$1"
  read -r total2 busy2 steal2 load2 ours2 <<<"$2"
  local total=$((total2 - total1)) ours=$((ours2 - ours1 + $3))
  if [ "$total" -lt $((10 * $(getconf _NPROCESSORS_ONLN))) ]; then  # under 0.1 s: too short to tell
    printf '%s\t%s\tNA\tNA\tno\n' "$load1" "$load2"
    return 0
  fi
  # In tenths of a percent, so that bash's integers give one decimal.
  local others=$(((busy2 - busy1 - ours) * 1000 / total)) stolen=$(((steal2 - steal1) * 1000 / total))
  [ "$others" -ge 0 ] || others=0  # the kernel samples ticks: ours can exceed busy by a few
  local busy=no
  [ $((others + stolen)) -lt $((${BUSY_PERCENT:-10} * 10)) ] || busy=yes
  printf '%s\t%s\t%d.%d\t%d.%d\t%s\n' "$load1" "$load2" \
    $((others / 10)) $((others % 10)) $((stolen / 10)) $((stolen % 10)) "$busy"
}

threads() {
  local start pid stat fields ticks=0 files=()
  start=$(date +%s%N)
  for pid in "$@"; do
    { read -r stat <"/proc/$pid/stat"; } 2>/dev/null || continue
    read -r -a fields <<<"${stat##*) }"
    ticks=$((ticks + fields[11] + fields[12]))
    files+=("/proc/$pid/task/"*/status)
  done
  echo "$(((start + $(date +%s%N)) / 2)) $ticks"  # the middle of the time it took to read
  [ "${#files[@]}" -gt 0 ] || return 0
  # In a thread's own status file, Pid: is the thread's id.
  cat "${files[@]}" 2>/dev/null | awk '
    $1 == "Pid:" { tid = $2 }
    $1 == "voluntary_ctxt_switches:" || $1 == "nonvoluntary_ctxt_switches:" { switches[tid] += $2 }
    END { for (tid in switches) print tid, switches[tid] }' || true
}

case ${1-} in
  snapshot) shift; snapshot "$@" ;;
  threads) shift; threads "$@" ;;
  between) [ "$#" -eq 4 ] || usage; between "$2" "$3" "$4" ;;
  *) usage ;;
esac
