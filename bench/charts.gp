# Charts for bench.sh's report. bench/report.sh calls it with five variables:
#   gnuplot -e "terminal='pngcairo'; data='FILE'; rounds='FILE'; output='FILE.png'; kind='scenarios'" bench/charts.gp
# kind='scenarios': data has a header line "scenario SERVER...", then one line per scenario with
#                   each server's median requests/s ("-" where a server was not run): grouped bars.
#                   rounds has one line per measured run: "group server requests/s", the group
#                   counted from 0 (the line of data after the header), the server from 1.
# kind='ladder':    data has one line per step of the tutorial, "label median highest": one bar per
#                   step; rounds has one line per run, "step requests/s", the step counted from 0.
# The bars are medians; each round is a dot over its bar, so the spread is in the picture.

set terminal terminal size 1000,560 noenhanced
set output output
set datafile separator "\t"
set datafile missing "-"
set style fill solid 0.75 border -1
set grid ytics
set yrange [0:*]
set offsets 0, 0, graph 0.12, 0   # room for the labels over the bars
set format y "%.0f"
set ylabel "requests/s (bars: median over rounds; dots: each round)"
set key outside bottom center horizontal
set bmargin 5

if (kind eq "scenarios") {
  servers = words(system("head -n 1 '" . data . "' | cut -f 2- | tr '\\t' ' '"))
  set title "wrk: requests/s per server and scenario"
  set style data histograms
  set style histogram clustered gap 1
  set boxwidth 0.9 relative
  # Bar s of n in cluster g sits at x = g + (s - (n+1)/2) / (n + gap).
  plot for [k = 2:servers + 1] data using k:xtic(1) title columnheader(k), \
       rounds using ($1 + ($2 - (servers + 1) / 2.0) / (servers + 1)):3 \
         with points pt 7 ps 0.7 lc rgb "black" title "one round"
} else {
  set title "wrk: the tutorial's steps, requests/s"
  set style data boxes
  set boxwidth 0.6
  set xtics noenhanced font ",10"  # seven steps' labels side by side
  set key inside top left
  plot data using 0:2:xtic(1) with boxes lc rgb "#4472c4" title "median", \
       rounds using 1:2 with points pt 7 ps 0.7 lc rgb "black" title "one round", \
       data using 0:3:(sprintf("%.0f", $2)) with labels offset 0,0.9 font ",9" notitle
}
