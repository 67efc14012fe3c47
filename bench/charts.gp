# Charts for bench.sh's report. bench.sh calls it with four variables:
#   gnuplot -e "terminal='pngcairo'; data='FILE'; output='FILE.png'; kind='scenarios'" bench/charts.gp
# kind='scenarios': data has a header line "scenario SERVER...", then one line per scenario with
#                   each server's median requests/s ("-" where a server was not run): grouped bars.
# kind='ladder':    one line per step of the tutorial, "label requests/s": one bar per step.

set terminal terminal size 1000,560 noenhanced
set output output
set datafile separator "\t"
set datafile missing "-"
set style fill solid 0.85 border -1
set grid ytics
set yrange [0:*]
set offsets 0, 0, graph 0.12, 0   # room for the labels over the bars
set format y "%.0f"
set ylabel "requests/s (median over rounds, higher is better)"
set key outside bottom center horizontal
set bmargin 5

if (kind eq "scenarios") {
  servers = words(system("head -n 1 '" . data . "' | cut -f 2- | tr '\\t' ' '"))
  set title "wrk: requests/s per server and scenario"
  set style data histograms
  set style histogram clustered gap 1
  set boxwidth 0.9 relative
  # A label over each bar: bar k of n in a cluster sits at x + (k - (n+1)/2) / (n + gap).
  plot for [k = 2:servers + 1] data using k:xtic(1) title columnheader(k), \
       for [k = 2:servers + 1] data using ($0 + (k - 1 - (servers + 1) / 2.0) / (servers + 1)):k:(sprintf("%.0f", column(k))) \
         every ::1 with labels rotate by 90 left offset 0,0.5 font ",8" notitle
} else {
  set title "wrk: the tutorial's steps, requests/s"
  set style data boxes
  set boxwidth 0.6
  set xtics noenhanced
  unset key
  plot data using 0:2:xtic(1) with boxes lc rgb "#4472c4", \
       data using 0:2:(sprintf("%.0f", $2)) with labels offset 0,0.8 font ",9"
}
