#!/usr/bin/env bash
# bench/redraw.sh: draws a committed report's charts again from the report itself, for reports
# made before bench/charts.sh drew every round, or after it changes.
#
#   bench/redraw.sh bench/results/REPORT.md
#   bench/redraw.sh --only SCENARIO:ID,ID... [--title TITLE] --output FILE.png bench/results/REPORT.md
#
# Every bench.sh report keeps each measured run in its last table, "Every run", and each row's
# label, in order, in its scenario's table. From those it rebuilds the files bench.sh would have
# left (rows.tsv, runs.tsv; then summary.tsv by bench/summarise.awk) and hands them to
# bench/charts.sh. The first form redraws every chart beside the report and rewrites the report's
# chart section to show them; the second draws one chart of the listed rows (as bench/charts.sh
# --only does) and leaves the report alone.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: bench/redraw.sh REPORT.md" >&2
  echo "       bench/redraw.sh --only SCENARIO:ID,ID... [--title TITLE] --output FILE.png REPORT.md" >&2
  exit 2
}

only=() output=""
while [ "$#" -gt 0 ]; do
  case $1 in
    --only | --title) [ "$#" -ge 2 ] || usage; only+=("$1" "$2"); shift 2 ;;
    --output) [ "$#" -ge 2 ] || usage; output=$2; shift 2 ;;
    -h | --help) usage ;;
    *) break ;;
  esac
done
if [ "$#" -ne 1 ] || [ ! -f "$1" ]; then usage; fi
readonly report=$1
[ "${#only[@]}" -eq 0 ] || [ -n "$output" ] || usage

work_dir=$(mktemp -d "${TMPDIR:-/tmp}/redraw.XXXXXX")
trap 'rm -rf "$work_dir"' EXIT

# The report's tables as tab-separated lines: "run" and the cells of each row of "Every run";
# "label", the scenario and the first cell of each row of a scenario's table.
report_cells() {
  awk -v OFS='\t' '
    function scenario_of(heading) {
      if (heading ~ /^## Keep-alive/) return "keep-alive"
      if (heading ~ /^## The ladder/) return "ladder"
      if (heading ~ /^## Buffer sizes/) return "buffers"
      if (heading ~ /^## Churn/) return "churn"
      if (heading ~ /^## Scaling/) return "scaling"
      if (heading ~ /^## The first server/) return "first"
      return ""
    }
    function cells(line, out,   n, i) {
      n = split(substr(line, 3, length(line) - 4), out, / \| /)
      for (i = 1; i <= n; i++) gsub(/^ +| +$/, "", out[i])
      return n
    }
    /^## / { section = $0; scenario = scenario_of($0); in_table = 0; table_done = 0; next }
    /^\| / {
      if (!in_table) { in_table = 1; header = 1; next }
      if (header) { header = 0; next }  # the | --- | line
      n = cells($0, cell)
      if (section == "## Every run" && cell[1] != "") {
        line = "run"
        for (i = 1; i <= n; i++) line = line OFS cell[i]
        print line
      } else if (scenario != "" && !table_done) {
        print "label", scenario, cell[1]
      }
      next
    }
    in_table { in_table = 0; table_done = 1 }
  ' "$report"
}

# rows.tsv and runs.tsv as bench.sh writes them (see bench/summarise.awk), from report_cells.
# A row's number is its place in round 1, which runs the rows in order; its label is the one in
# the same place of its scenario's table. What the report does not keep is NA.
rebuild_runs() {
  awk -F '\t' -v OFS='\t' -v rows="$work_dir/rows.tsv" -v runs="$work_dir/runs.tsv" '
    function plain(n) { gsub(/,/, "", n); return n == "n/a" || n == "failed" || n == "" ? "NA" : n }
    $1 == "label" { labels[$2, ++nlabels[$2]] = $3; next }
    $1 == "run" {
      scenario = $2; id = $3; conns = $4; round = $5
      if (round == 1) {
        row[scenario, id, conns] = nrows[scenario]++
        order[++all] = scenario SUBSEP id SUBSEP conns
      }
      errors = $9; split(errors, parts, /[ ()\/]+/)
      busy = $16 == "BUSY" ? "yes" : "no"
      print scenario, row[scenario, id, conns], round, id, conns, plain($6), plain($7), plain($8),
        plain(parts[1]), plain(parts[2]), plain(parts[3]), plain(parts[4]), plain(parts[5]),
        plain($10), plain($11), plain($12), "NA", "NA", plain($14), plain($15), busy,
        plain($17), plain($18), plain($19) >runs
    }
    END {
      for (i = 1; i <= all; i++) {
        split(order[i], key, SUBSEP)
        n = row[key[1], key[2], key[3]] + 1
        label = (key[1], n) in labels ? labels[key[1], n] : key[2]
        print key[1], n - 1, key[2], key[3], key[1] == "churn" ? "close" : "keep-alive", label, key[2] == "caddy" ? "Caddy" : key[2] >rows
      }
    }
  '
}

# The report's chart section, from its heading to the next, replaced by CHARTS (Markdown). What
# the section had after its charts, from the first paragraph of prose on (a chart drawn with
# --only, and the words around it), stays, after the new charts.
rewrite_chart_section() {
  local charts=$1 updated="$work_dir/report.md"
  awk -v charts="$charts" '
    function end_section() { printf "%s", kept; skipping = 0 }
    /^## Charts?$/ {
      print "## Charts"; print ""
      print "Drawn again by `bench/redraw.sh` from the \"Every run\" table below."; print ""
      printf "%s", charts
      skipping = 1; next
    }
    skipping && /^## / { end_section() }
    skipping {
      if (kept == "" && ($0 == "" || $0 ~ /^!\[/ || $0 ~ /^(Drawn again|Chart skipped)/)) next
      kept = kept $0 "\n"; next
    }
    { print }
  ' "$report" >"$updated"
  cat "$updated" >"$report"
}

report_cells | rebuild_runs
[ -s "$work_dir/runs.tsv" ] || { echo "bench/redraw.sh: no \"Every run\" table in $report" >&2; exit 1; }
awk -F '\t' -v OFS='\t' -f bench/summarise.awk "$work_dir/rows.tsv" "$work_dir/runs.tsv" >"$work_dir/summary.tsv"
if [ "${#only[@]}" -gt 0 ]; then
  bench/charts.sh "${only[@]}" "$work_dir" "$output"
else
  charts=$(bench/charts.sh "$work_dir" "${report%.md}")
  rewrite_chart_section "$charts"$'\n\n'
  echo "bench/redraw.sh: redrew the charts of $report:" >&2
  grep -o '([^)]*\.png)' <<<"$charts" | tr -d '()' | sed 's/^/  /' >&2
fi
