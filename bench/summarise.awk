# summarise.awk: the statistics of a bench.sh run, one line per row of a scenario.
#
#   awk -F '\t' -v OFS='\t' -f bench/summarise.awk rows.tsv runs.tsv >summary.tsv
#
# rows.tsv, one line per row: scenario, row, server id, connections, mode, label, short label.
# runs.tsv, one line per measured run (bench.sh's measure_row): scenario, row, round, server id,
# connections, requests/s, p50 ms, p99 ms, socket errors, connect, read, write, timeout, non-2xx,
# MB/s, peak RSS kB, load before, load after, others %, steal %, busy (yes/no), context switches
# per request, server CPU microseconds per request, threads that ended while those were counted
# (the last three NA where the scenario does not count them).
#
# Out, per row: its seven fields from rows.tsv, then the runs measured; requests/s median, min,
# max; "vs Caddy" (the median over Caddy's median in the same scenario at the same connections),
# with the min and max of the same ratio taken round by round; p50 and p99 median, min, max;
# socket errors and non-2xx summed over the rounds; median MB/s; the highest peak RSS; the number
# of runs flagged busy; context switches and CPU microseconds per request, median, min, max; the
# threads that ended while they were counted, summed. "NA" wherever there was nothing to take it from.

function sort_numbers(list, values,   n, i, j, swap) {
  n = split(list, values, " ")
  for (i = 2; i <= n; i++)
    for (j = i; j > 1 && values[j - 1] + 0 > values[j] + 0; j--) {
      swap = values[j]; values[j] = values[j - 1]; values[j - 1] = swap
    }
  return n
}

function median(list,   values, n) {
  n = sort_numbers(list, values)
  if (n == 0) return "NA"
  return n % 2 ? values[(n + 1) / 2] : (values[n / 2] + values[n / 2 + 1]) / 2
}

function smallest(list,   values, n) { n = sort_numbers(list, values); return n ? values[1] : "NA" }
function largest(list,   values, n) { n = sort_numbers(list, values); return n ? values[n] : "NA" }
function sum(list,   values, n, i, total) {
  n = split(list, values, " ")
  for (i = 1; i <= n; i++) total += values[i]
  return n ? total : "NA"
}
function ratio(a, b) { return (a == "NA" || b == "NA" || b <= 0) ? "NA" : a / b }

BEGIN { OFMT = CONVFMT = "%.4f" }  # not %.6g: 1234567 requests would print as 1.23457e+06

FILENAME ~ /rows\.tsv$/ { key = $1 SUBSEP $2; order[++rows] = key; row[key] = $0; next }

{
  key = $1 SUBSEP $2
  runs[key]++
  if ($21 == "yes") busy[key]++
  if ($6 == "NA") next  # wrk printed no result: the run counts, its numbers do not
  rps[key] = rps[key] " " $6; p50[key] = p50[key] " " $7; p99[key] = p99[key] " " $8
  errors[key] = errors[key] " " $9; non2xx[key] = non2xx[key] " " $14; mbps[key] = mbps[key] " " $15
  if ($16 != "NA") rss[key] = rss[key] " " $16
  if ($22 != "NA" && $22 != "") { switches[key] = switches[key] " " $22; cpu[key] = cpu[key] " " $23; ended[key] = ended[key] " " $24 }
  round_rps[key, $3] = $6
  if ($4 == "caddy") caddy_round[$1, $5, $3] = $6
}

END {
  for (i = 1; i <= rows; i++) {
    key = order[i]; split(row[key], field, "\t")
    median_rps[key] = median(rps[key])
    if (field[3] == "caddy") caddy[field[1], field[4]] = median_rps[key]
  }
  for (i = 1; i <= rows; i++) {
    key = order[i]; split(row[key], field, "\t")
    rounds_ratio = ""
    for (both in round_rps) {
      split(both, part, SUBSEP)
      if (part[1] SUBSEP part[2] != key || !((field[1], field[4], part[3]) in caddy_round)) continue
      r = ratio(round_rps[both], caddy_round[field[1], field[4], part[3]])
      if (r != "NA") rounds_ratio = rounds_ratio " " r
    }
    reference = (field[1], field[4]) in caddy ? caddy[field[1], field[4]] : "NA"
    print row[key], runs[key] + 0,
      median_rps[key], smallest(rps[key]), largest(rps[key]),
      ratio(median_rps[key], reference), smallest(rounds_ratio), largest(rounds_ratio),
      median(p50[key]), smallest(p50[key]), largest(p50[key]),
      median(p99[key]), smallest(p99[key]), largest(p99[key]),
      sum(errors[key]), sum(non2xx[key]), median(mbps[key]), largest(rss[key]), busy[key] + 0,
      median(switches[key]), smallest(switches[key]), largest(switches[key]),
      median(cpu[key]), smallest(cpu[key]), largest(cpu[key]), sum(ended[key])
  }
}
