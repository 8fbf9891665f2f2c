# bench/run's chart: one bar per target, Shield / nginx (or Shield / limit for
# the absolute targets), green when the target is met, red when not; the black
# tick is the target. Log scale, so 2x better and 2x worse look alike.
#   gnuplot -e "datafile='X.dat'; outfile='X.png'" bench/plot.gp
# datafile columns: "label" value limit rgb-colour
set terminal pngcairo size 1400,700 font 'DejaVu Sans,10'
set output outfile
set title 'Shield vs nginx proxy\_cache: measured ratio (bar) against the target (black tick)'
set logscale y 2
set yrange [*:*]
set ylabel 'Shield / nginx  (absolute targets: Shield / limit)'
set grid ytics
set style fill solid 0.8 border -1
set boxwidth 0.6
set xtics rotate by -30 left font ',8' nomirror
set bmargin 9
set rmargin 8
set key off
plot datafile using 0:2:($2*0+0.6):4:xtic(1) with boxes lc rgb variable, \
     datafile using 0:3:($0-0.4):($0+0.4) with xerrorbars pt 0 lw 3 lc rgb 'black', \
     1 with lines dt 2 lc rgb 'gray'
