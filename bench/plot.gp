# Called by run.sh with datafile and outfile set.
set terminal pngcairo size 1200,480 font ",10" noenhanced
set output outfile
set multiplot layout 1,2
set title "Handle decode, 1 thread (median ns per operation)"
set logscale x
set xlabel "objects in the map"
set ylabel "ns"
set yrange [0:*]
set grid
set key below
plot datafile index 0 using 1:2 with linespoints lw 2 title "fhmap_decode", \
     datafile index 0 using 1:3 with linespoints lw 2 title "raw LMDB mdb_get (floor)", \
     datafile index 0 using 1:5 with linespoints lw 2 dt 2 title "mdb_get, named table", \
     datafile index 0 using 1:4 with linespoints lw 2 title "SQLite (WAL, prepared)"
unset logscale x
set title "Resolve handle to open fd (median ns), real ext4 files"
set xlabel ""
set style data histogram
set style histogram cluster gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set key below
plot datafile index 1 using 2:xtic(1) title "hot", '' index 1 using 3 title "after drop_caches"
unset multiplot
