# Counts sync syscalls per durable commit from `strace -f -o` output of a
# fhmap-bench copy-up run. The bench's progress lines on fd 2 mark the phases;
# "commits" is the number of durable commits per sync mode (begin + commit).
/ write\(2, ".*copy-ups, sync full/ { mode = "full"; next }
/ write\(2, ".*copy-ups, sync lazy/ { mode = "lazy"; next }
/ write\(2, ".*copy-ups done/ { mode = ""; next }
/ openat\(/ {
	fd = $NF
	if (fd !~ /^[0-9]+$/)
		next
	if ($0 ~ /O_DSYNC|O_SYNC/)
		dsync[fd] = 1
	else
		delete dsync[fd]
	next
}
mode != "" && /(fsync|fdatasync|msync|sync_file_range)\(/ { syncs[mode]++; next }
mode != "" && / pwrite64\(/ {
	split($2, a, /[(,]/)
	if (a[2] in dsync)
		dwrites[mode]++
}
END {
	split("full lazy", ms, " ")
	for (i = 1; i <= 2; i++) {
		m = ms[i]
		printf "@syscalls %s %.2f %.2f\n", m, syncs[m] / commits, dwrites[m] / commits
	}
}
