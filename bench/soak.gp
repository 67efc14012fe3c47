# The tutorial's two RSS curves: main_async and the broken "unreaped" build under the same soak,
# side by side on the same scale. Made from the CSV files tests/soak.sh writes with --csv:
#   gnuplot -e "good='build/soak-main_async.csv'; bad='build/soak-main_async_unreaped.csv'; output='soak.png'" bench/soak.gp
# CSV columns: seconds,phase,connections,rss_kib,threads,vsz_mib

set terminal pngcairo size 1000,460 noenhanced
set output output
set datafile separator ","
set key autotitle columnhead
set grid
set xlabel "connections served"
set ylabel "resident memory (MiB)"
set format x "%.0f"
# The same scales on both sides: the broken run is shorter (it only has to show the slope).
stats bad using 4 nooutput
top = STATS_max / 1024.0 * 1.1
stats good using 3 nooutput
right = STATS_max
stats bad using 3 nooutput
right = STATS_max > right ? STATS_max : right
set yrange [0:top]
set xrange [0:right]
set multiplot layout 1,2 title "Memory while serving connection after connection (tests/soak.sh)"
set title "main_async: threads detached, each stack freed as it ends"
plot good using 3:($4/1024.0) with linespoints lw 2 pt 7 ps 0.6 lc rgb "#4472c4" notitle
set title "broken variant: joinable threads, never joined"
plot bad using 3:($4/1024.0) with linespoints lw 2 pt 7 ps 0.6 lc rgb "#c0504d" notitle
unset multiplot
