#!/usr/bin/env bash
# bench/charts.sh: the charts of one bench.sh run, drawn by bench/charts.gp with gnuplot.
#
#   bench/charts.sh WORK_DIR STEM
#   bench/charts.sh --only SCENARIO:ID,ID... [--title TITLE] WORK_DIR FILE.png
#
# The first form draws every chart the run has and prints the Markdown that shows them:
# STEM.png, the servers side by side in keep-alive, churn and scaling; STEM-ladder.png,
# STEM-buffers.png and STEM-first.png, one bar per row of that scenario, with its p99 beside.
# The second draws one such chart of the rows of SCENARIO whose server ids are listed, in that
# order (chapter 9's logging chart: three steps of the ladder). Each bar is a median, with a
# whisker from the lowest round to the highest and a dot per round. WORK_DIR holds what
# bench/report.sh reads (rows.tsv, runs.tsv) and the summary it makes of them (summary.tsv,
# bench/summarise.awk); bench/redraw.sh rebuilds those three from a committed report.
set -euo pipefail
cd "$(dirname "$0")/.."

# The scenarios drawn one bar per row; the others share the grouped chart.
readonly STEPS_SCENARIOS="ladder buffers first"
readonly LABEL_WIDTH=16  # characters per line of a bar's label, at most (longer words stay whole)

usage() {
  echo "usage: bench/charts.sh WORK_DIR STEM" >&2
  echo "       bench/charts.sh --only SCENARIO:ID,ID... [--title TITLE] WORK_DIR FILE.png" >&2
  exit 2
}

only="" title=""
while [ "$#" -gt 0 ]; do
  case $1 in
    --only) [ "$#" -ge 2 ] || usage; only=$2; shift 2 ;;
    --title) [ "$#" -ge 2 ] || usage; title=$2; shift 2 ;;
    -h | --help) usage ;;
    *) break ;;
  esac
done
if [ "$#" -ne 2 ] || [ ! -d "$1" ]; then usage; fi
readonly work_dir=$1 target=$2

is_steps_scenario() {
  [[ " $STEPS_SCENARIOS " == *" $1 "* ]]
}

# For the grouped chart: a header "scenario NAME NAME_min NAME_max ...", then one line per group
# (a scenario, or scaling at one connection count) with each server's median, lowest and highest
# round, "-" where it did not run; and into ROUNDS one line per measured run: group number (from
# 0), server number (from 1), requests/s.
grouped_data() {
  awk -F '\t' -v OFS='\t' -v rounds="$1" -v steps=" $STEPS_SCENARIOS " '
    index(steps, " " $1 " ") { next }
    FILENAME ~ /summary/ {
      group = $1 == "scaling" ? "scaling -c" $4 : $1
      if (!(group in group_of)) { group_of[group] = ngroups++; groups[ngroups] = group }
      if (!($3 in server_of)) { server_of[$3] = ++nservers; ids[nservers] = $3; names[nservers] = $7 }
      value[group, $3] = $9 OFS $10 OFS $11
      next
    }
    $6 != "NA" {
      group = $1 == "scaling" ? "scaling -c" $5 : $1
      print group_of[group], server_of[$4], $6 >rounds
    }
    END {
      if (ngroups == 0) exit
      line = "scenario"
      for (s = 1; s <= nservers; s++) line = line OFS names[s] OFS names[s] "_min" OFS names[s] "_max"
      print line
      for (g = 1; g <= ngroups; g++) {
        line = groups[g]
        for (s = 1; s <= nservers; s++) {
          v = value[groups[g], ids[s]]
          line = line OFS ((v == "" || v ~ /NA/) ? "-" OFS "-" OFS "-" : v)
        }
        print line
      }
    }
  ' "$work_dir/summary.tsv" "$work_dir/runs.tsv"
}

# For a steps chart of SCENARIO (only the server ids in IDS, space-separated, in that order, when
# given): "label rps min max p99 min max" per row, the label cut into lines of LABEL_WIDTH
# characters at spaces, with "|" between them (charts.gp breaks the line there); and into ROUNDS
# "bar number (from 0), requests/s, p99 ms" per measured run.
steps_data() {
  local scenario=$1 ids=$2 rounds=$3
  awk -F '\t' -v OFS='\t' -v scenario="$scenario" -v ids="$ids" -v rounds="$rounds" -v width="$LABEL_WIDTH" '
    function wrapped(text,   words, n, i, line, out) {
      n = split(text, words, " ")
      for (i = 1; i <= n; i++) {
        if (line != "" && length(line) + 1 + length(words[i]) > width) { out = out line "|"; line = words[i] }
        else line = line (line == "" ? "" : " ") words[i]
      }
      return out line
    }
    function na(v) { return v == "NA" ? "-" : v }
    BEGIN { n = split(ids, wanted, " "); for (i = 1; i <= n; i++) position[wanted[i]] = i }
    $1 != scenario { next }
    FILENAME ~ /summary/ {
      if (ids != "" && !($3 in position)) next
      bar[$2] = ids == "" ? ++bars : position[$3]
      line[bar[$2]] = wrapped($6) OFS na($9) OFS na($10) OFS na($11) OFS na($18) OFS na($19) OFS na($20)
      if (bar[$2] > most) most = bar[$2]
      next
    }
    ($2 in bar) && $6 != "NA" { print bar[$2] - 1, $6, $8 >rounds }
    END { for (i = 1; i <= most; i++) if (i in line) print line[i] }
  ' "$work_dir/summary.tsv" "$work_dir/runs.tsv"
}

gnuplot_terminal() {
  if gnuplot -e 'set terminal pngcairo' >/dev/null 2>&1; then echo pngcairo; else echo png; fi
}

# draw KIND DATA ROUNDS PNG [TITLE]: succeeds when gnuplot drew it.
draw() {
  local terminal settings
  terminal=$(gnuplot_terminal)
  settings="terminal='$terminal'; data='$2'; rounds='$3'; output='$4'; kind='$1'"
  [ -z "${5:-}" ] || settings+="; title='${5//\'/}'"
  gnuplot -e "$settings" bench/charts.gp >&2
}

# One line of Markdown per chart, or why it is missing.
show() {
  local png=$1 alt=$2
  if [ "$3" = drawn ]; then
    echo "![$alt (bars: medians; whiskers: lowest to highest round; dots: each round)]($(basename "$png"))"
  else
    echo "Chart skipped: gnuplot failed to draw $(basename "$png")."
  fi
  echo
}

every_chart() {
  local stem=$1 scenario png status
  : >"$work_dir/grouped-rounds.dat"
  grouped_data "$work_dir/grouped-rounds.dat" >"$work_dir/grouped.dat"
  if [ -s "$work_dir/grouped.dat" ]; then
    status=drawn
    draw scenarios "$work_dir/grouped.dat" "$work_dir/grouped-rounds.dat" "$stem.png" || status=failed
    show "$stem.png" "Requests/s per server and scenario" "$status"
  fi
  for scenario in $STEPS_SCENARIOS; do
    grep -q "^$scenario	" "$work_dir/summary.tsv" || continue
    png="$stem-$scenario.png" status=drawn
    : >"$work_dir/$scenario-rounds.dat"
    steps_data "$scenario" "" "$work_dir/$scenario-rounds.dat" >"$work_dir/$scenario.dat"
    draw steps "$work_dir/$scenario.dat" "$work_dir/$scenario-rounds.dat" "$png" "$(steps_title "$scenario")" ||
      status=failed
    show "$png" "$(steps_title "$scenario")" "$status"
  done
}

steps_title() {
  case $1 in
    ladder) echo "The ladder: requests/s and p99 per step" ;;
    buffers) echo "Buffer sizes: requests/s and p99 of main_async" ;;
    first) echo "The first server beside main and main_async: requests/s and p99" ;;
    *) echo "$1: requests/s and p99" ;;
  esac
}

one_chart() {
  local scenario=${only%%:*} ids=${only#*:}
  if [ -z "$scenario" ] || [ "$ids" = "$only" ]; then usage; fi
  : >"$work_dir/only-rounds.dat"
  steps_data "$scenario" "${ids//,/ }" "$work_dir/only-rounds.dat" >"$work_dir/only.dat"
  [ -s "$work_dir/only.dat" ] || { echo "bench/charts.sh: no rows of $scenario for ${ids}" >&2; exit 1; }
  draw steps "$work_dir/only.dat" "$work_dir/only-rounds.dat" "$target" "${title:-$(steps_title "$scenario")}"
  echo "bench/charts.sh: drew $target" >&2
}

if ! command -v gnuplot >/dev/null 2>&1; then
  [ -z "$only" ] || { echo "bench/charts.sh: gnuplot is not installed" >&2; exit 1; }
  echo "Charts skipped: gnuplot is not installed (\`apt-get install gnuplot-nox\` adds it)."
  exit 0
fi
if [ -n "$only" ]; then one_chart; else every_chart "$target"; fi
