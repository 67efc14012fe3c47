# Charts for bench.sh's reports: every chart shows each round, not only the median.
# bench/charts.sh calls it with these variables (title is optional):
#   gnuplot -e "terminal='pngcairo'; data='FILE'; rounds='FILE'; output='FILE.png'; kind='scenarios'; title='...'" bench/charts.gp
# kind='scenarios': grouped bars, requests/s. data has a header line "scenario NAME NAME_min NAME_max
#                   ...", then one line per group (a scenario, or scaling at one connection count)
#                   with each server's median, lowest and highest round ("-" where it did not run).
#                   rounds has one line per measured run: "group server requests/s", the group
#                   counted from 0 (the line of data after the header), the server from 1.
# kind='steps':     one bar per row of one scenario (the ladder, the buffer sizes), in two panels:
#                   requests/s and p99 latency. data has one line per row, "label rps rps_min
#                   rps_max p99 p99_min p99_max" (medians, lowest and highest round); rounds one
#                   line per run, "row requests/s p99_ms", the row counted from 0.
# In both, a bar is the median, its whisker runs from the lowest round to the highest, and each
# round is a dot: three rounds that agree make one short whisker, three that do not make a long one.

if (!exists("title")) title = (kind eq "scenarios") ? "wrk: requests/s per server and scenario" \
                                                    : "wrk: requests/s and p99 latency per row"
set terminal terminal size 1000,560 noenhanced
set output output
set datafile separator "\t"
set datafile missing "-"
set style fill solid 0.75 border -1
set grid ytics
set yrange [0:*]
set format y "%.0f"
set key outside bottom center horizontal
set bmargin 5

# A bar's label comes cut into lines with "|" between them (bench/charts.sh): one line each here.
lines(s) = strstrt(s, "|") > 0 ? s[1:strstrt(s, "|") - 1] . "\n" . lines(s[strstrt(s, "|") + 1:*]) : s

if (kind eq "scenarios") {
  names = system("head -n 1 '" . data . "' | cut -f 2- | tr '\\t' ' '")
  servers = words(names) / 3
  # One colour per server, the same in every report's chart.
  colour(name) = name eq "main" ? "#9b30d9" : name eq "main_async" ? "#2aa87e" : \
                 name eq "main_epoll" ? "#64b5e8" : name eq "Caddy" ? "#eba72a" : \
                 name eq "nginx" ? "#ede15b" : name eq "first_server" ? "#d9534f" : "#999999"
  set title title . "\nbar: median; whisker: lowest to highest round; dot: one round"
  set ylabel "requests/s"
  set style data histograms
  set style histogram errorbars gap 1 lw 1.5
  set boxwidth 0.9 relative
  # Bar s of n in cluster g sits at x = g + (s - (n+1)/2) / (n + gap).
  plot for [s = 1:servers] data using 3 * s - 1:3 * s:3 * s + 1:xtic(1) \
         lc rgb colour(word(names, 3 * s - 2)) title columnheader(3 * s - 1), \
       rounds using ($1 + ($2 - (servers + 1) / 2.0) / (servers + 1)):3 \
         with points pt 7 ps 0.6 lc rgb "black" title "one round"
} else {
  # Two panels, one above the other, sharing the rows: requests/s, then p99 latency.
  set terminal terminal size 1000,760 noenhanced
  set output output
  set multiplot title title . "\nbar: median; whisker: lowest to highest round; dot: one round"
  set style data boxes
  set boxwidth 0.6
  bars = int(system("wc -l < '" . data . "'"))
  set xrange [-0.6:bars - 0.4]
  set offsets 0, 0, graph 0.12, 0
  set lmargin 12
  set rmargin 3
  set tmargin 1
  set key off  # the title says what bars, whiskers and dots are
  set origin 0, 0.52
  set size 1, 0.42
  set bmargin 1
  set xtics 1 format ""
  set ylabel "requests/s"
  plot data using 0:2 with boxes lc rgb "#4472c4", \
       data using 0:2:3:4 with yerrorbars pt -1 lw 1.5 lc rgb "black", \
       rounds using 1:2 with points pt 7 ps 0.6 lc rgb "black", \
       data using 0:4:(sprintf("%.0f", $2)) with labels offset 0,0.8 font ",9"
  set origin 0, 0
  set size 1, 0.52
  set tmargin 0.5
  set bmargin 4
  set xtics noenhanced font ",9"
  set ylabel "p99 latency, ms"
  set format y "%.1f"
  plot data using 0:5:xtic(lines(strcol(1))) with boxes lc rgb "#ed7d31", \
       data using 0:5:6:7 with yerrorbars pt -1 lw 1.5 lc rgb "black", \
       rounds using 1:3 with points pt 7 ps 0.6 lc rgb "black", \
       data using 0:7:(sprintf("%.2f", $5)) with labels offset 0,0.8 font ",9"
  unset multiplot
}
