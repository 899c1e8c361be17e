# Called by bench/union/run.sh with datafile, outfile, ncol (columns of a
# block), nb (blocks) and b0, b1 (the baseline of each block) set.
set terminal pngcairo size 1600,nb*460 font ",9" noenhanced
set output outfile
set multiplot layout nb,1
set style data histogram
set style histogram cluster gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y
set yrange [0.02:*]
set ytics (0.03, 0.1, 0.3, 0.5, 1, 1.5, 2, 3, 5, 10, 30, 100, 300, 1000)
set grid ytics
set xtics rotate by -35 scale 0
set ylabel "median time / baseline's median time"
set key outside right top vertical
do for [b=0:nb-1] {
	base = b == 0 ? b0 : b1
	set title sprintf("Time relative to %s (log scale; 1 = as fast, below 1 = faster)", base)
	plot for [i=2:ncol] datafile index b using i:xtic(1) title columnheader(i), \
	     1 with lines lc rgb "black" dt 2 notitle
}
unset multiplot
