# Turns the "@kind ..." lines of bench/union/run.sh into docs/benchmarks-union.md
# (mode=report, png = plot file name), the plot data (mode=plot: per
# baseline a block "workload SYS..." of median-time ratios) or the workloads
# where an fhmap-unionfs configuration misses a target (mode=missed).
# Portable awk (Debian's default is mawk).
function rest(from,   s, i) { s = $from; for (i = from + 1; i <= NF; i++) s = s " " $i; return s }
function fmt(v) { return v >= 100 ? sprintf("%.0f", v) : v >= 10 ? sprintf("%.1f", v) : v >= 1 ? sprintf("%.2f", v) : sprintf("%.3f", v) }
function fmtr(v) { return v >= 10 ? sprintf("%.0f", v) : sprintf("%.2f", v) }
function nice(v,   s, out) {
	s = sprintf("%.0f", v); out = ""
	while (length(s) > 3) { out = "," substr(s, length(s) - 2) out; s = substr(s, 1, length(s) - 3) }
	return s out
}
# Sorts the space-separated numbers of s into a[1..n]; returns n.
function sortv(s, a,   n, i, j, t) {
	n = split(s, a, " ")
	for (i = 2; i <= n; i++) {
		t = a[i] + 0
		for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]
		a[j + 1] = t
	}
	return n
}
function median(s,   a, n) { n = sortv(s, a); if (!n) return ""; return n % 2 ? a[(n + 1) / 2] + 0 : (a[n / 2] + a[n / 2 + 1]) / 2 }
function has(id, s) { return (id SUBSEP s) in vals }
function med(id, s) { return has(id, s) ? median(vals[id, s]) : "" }
function ratio(id, a, b,   x, y) { x = med(id, a); y = med(id, b); return x != "" && y != "" && y > 0 ? x / y : "" }
function cell(id, s,   a, n, k) {
	if (!has(id, s)) {
		k = unit[id] SUBSEP s
		return (k in fail) ? "fails" footnote(s ": " unit[id] ": " fail[k]) : "—"
	}
	n = sortv(vals[id, s], a)
	return n > 1 ? sprintf("%s (%s–%s)", fmt(median(vals[id, s])), fmt(a[1]), fmt(a[n])) : fmt(a[1])
}
function footnote(text,   i) {
	for (i = 1; i <= nnotes; i++) if (notes[i] == text) return "[" i "]"
	notes[++nnotes] = text
	return "[" nnotes "]"
}
# Markdown table cells: a "|" would end the cell.
function esc(t) { gsub(/\|/, "\\|", t); return t }
# Orders the space-separated names of list by key[k, name], largest first,
# into out[1..n]; returns n.
function byval(list, key, k, out,   n, i, j, t) {
	n = split(list, out, " ")
	for (i = 2; i <= n; i++) {
		t = out[i]
		for (j = i - 1; j >= 1 && keyof(key, k, out[j]) < keyof(key, k, t); j--) out[j + 1] = out[j]
		out[j + 1] = t
	}
	return n
}
function keyof(key, k, name) { return ((k SUBSEP name) in key) ? key[k, name] + 0 : 0 }
# Header and alignment rows of a table: first column, then cols[1..n]
# except the one named skip, right-aligned.
function thead(first, cols, n, skip,   j) {
	printf "| %s |", first
	for (j = 1; j <= n; j++) if (cols[j] != skip) printf " %s |", cols[j]
	printf "\n| --- |"
	for (j = 1; j <= n; j++) if (cols[j] != skip) printf " ---: |"
	print ""
}
# " (N per operation)" for a workload of more than one operation.
function perop(n, u, f) { return unit_ops[u] > 1 ? sprintf(" (" f " per operation)", n / unit_ops[u]) : "" }
function inlist(list, x) { return index(" " list " ", " " x " ") > 0 }
function hascls(id, c) { return index("," cls[id] ",", "," c ",") > 0 }
# Checks one target for configuration c; fills tres[t, c] and the missed units.
function check(t, c, label, limit, peer, classes,   i, id, r, worst, wid, miss, n, k) {
	if (peer != "" && !inlist(systems, peer)) { tres[t, c] = "| " label " | " c " | not measured (" peer " not in this run) | | |"; return }
	worst = ""; miss = ""; n = 0
	for (i = 1; i <= nids; i++) {
		id = ids[i]
		if (classes != "" && !hascls(id, classes)) continue
		k = unit[id] SUBSEP c
		if (!has(id, c) && (k in fail)) { miss = miss ", " id " (fails)"; missed_unit[unit[id]] = 1; n++; continue }
		r = ratio(id, c, peer)
		if (r == "") continue
		n++
		if (worst == "" || r > worst) { worst = r; wid = id }
		if (r > limit) { miss = miss sprintf(", %s (%s×)", id, fmtr(r)); missed_unit[unit[id]] = 1 }
	}
	if (!n) { tres[t, c] = "| " label " | " c " | no workload of this kind in this run | | |"; return }
	sub(/^, /, "", miss)
	tres[t, c] = sprintf("| %s | %s | %s | %s | %s |", label, c, miss == "" ? "**met**" : "**missed**",
	                     worst == "" ? "" : wid " " fmtr(worst) "×", miss)
}
function check_scaling(c,   p, ph, r, miss, worst, wp, n) {
	split("create stat rename unlink", ph, " ")
	miss = ""; n = 0; worst = ""
	for (p = 1; p <= 4; p++) {
		if (!has("meta1t-" ph[p], c) || !has("meta4t-" ph[p], c)) {
			if ((("meta1t" SUBSEP c) in fail) || (("meta4t" SUBSEP c) in fail)) { miss = miss ", " ph[p] " (fails)"; missed_unit["meta4t"] = 1; n++ }
			continue
		}
		n++
		r = med("meta1t-" ph[p], c) / med("meta4t-" ph[p], c)
		if (worst == "" || r < worst) { worst = r; wp = ph[p] }
		if (r < 1.8) { miss = miss sprintf(", %s (%.2f×)", ph[p], r); missed_unit["meta1t"] = 1; missed_unit["meta4t"] = 1 }
	}
	if (!n) { tres["scale", c] = "| 4-thread metadata throughput ≥ 1.8× 1-thread | " c " | meta1t/meta4t not in this run | | |"; return }
	sub(/^, /, "", miss)
	tres["scale", c] = sprintf("| 4-thread metadata throughput ≥ 1.8× 1-thread | %s | %s | %s | %s |", c,
	                           miss == "" ? "**met**" : "**missed**", worst == "" ? "" : wp " " sprintf("%.2f×", worst), miss)
}
function targets(   i, c) {
	for (i = 1; i <= nsys; i++) {
		c = sys[i]
		if (c !~ /^fhmap-/) continue
		if (c == role["default"]) check("t1", c, "default mode ≤ 1.0× fuse-overlayfs, every workload", 1.0, "fuse-overlayfs", "")
		if (c == role["full"]) check("t2", c, "FULL mode ≤ 1.5× fuse-overlayfs, every workload", 1.5, "fuse-overlayfs", "")
		check("t3s", c, "≤ 2× kernel overlayfs on stat", 2, "overlayfs", "stat")
		check("t3c", c, "≤ 2× kernel overlayfs on copy-up", 2, "overlayfs", "copyup")
		check("t3q", c, "≤ 2× kernel overlayfs on sequential I/O", 2, "overlayfs", "seqio")
		check("t4", c, "≤ 3× kernel overlayfs on creates", 3, "overlayfs", "create")
		check_scaling(c)
	}
}
$1 == "@command" { cmd = rest(2); next }
$1 == "@machine" { machine[$2] = rest(3); mkeys[++nm] = $2; next }
$1 == "@role" { role[$2] = $3; next }
$1 == "@system" { sysdesc[$2] = rest(3); next }
$1 == "@note" { runnotes = runnotes "- " rest(2) "\n"; next }
$1 == "@units" { units = rest(2); next }
$1 == "@systems" { systems = rest(2); nsys = split(systems, sys, " "); next }
$1 == "@workload" { wid[++nw] = $2; unit[$2] = $3; cls[$2] = $4; ops[$2] = $5; desc[$2] = esc(rest(6)); next }
$1 == "@result" { vals[$2, $3] = vals[$2, $3] " " $5; next }
$1 == "@fail" { k = $2 SUBSEP $3; if (!(k in fail)) fail[k] = esc(rest(5)); nfail[k]++; next }
$1 == "@cpu" { cpu[$2, $3] = cpu[$2, $3] " " $5; wall[$2, $3] = wall[$2, $3] " " $6; next }
$1 == "@busy" { if (NF > 2) busy = busy (busy == "" ? "" : "; ") "round " $2 ": " rest(3); next }
$1 == "@seconds" { secs[$2] = $3; next }
$1 == "@profiled" { profiled[++nprof] = $2; next }
$1 == "@strace" {
	k = $2 SUBSEP $3
	if ($4 == "total") { sc_total[k] = $5; sc_tsecs[k] = $7; next }
	sc[k, $4] = $5; sc_err[k, $4] = $6; sc_s[k, $4] = $7
	if ($4 ~ /^(fsync|fdatasync|msync|sync_file_range|syncfs)$/) sc_sync_s[k] += $7
	if (!(($2 SUBSEP $4) in sc_seen)) { sc_seen[$2, $4] = 1; sc_names[$2] = sc_names[$2] " " $4 }
	if ($4 ~ /^(fsync|fdatasync|msync|sync_file_range|syncfs)$/) sc_sync[k] += $5
	next
}
$1 == "@fusereq" {
	k = $2 SUBSEP $3
	fr[k, $4] = $5; fr_total[k] += $5; fr_src[$2] = $6
	if (!(($2 SUBSEP $4) in fr_seen)) { fr_seen[$2, $4] = 1; fr_names[$2] = fr_names[$2] " " $4 }
	next
}
$1 == "@perfdso" { perfdso[$2, $3] = perfdso[$2, $3] ", " $5 " " $4; next }
$1 == "@perf" { perf[$2, $3] = perf[$2, $3] sprintf("| %s | %s | %s |\n", $4, $5, rest(6)); next }
END {
	for (i = 1; i <= nw; i++)
		if (inlist(units, unit[wid[i]])) { ids[++nids] = wid[i]; unit_ops[unit[wid[i]]] += ops[wid[i]] }
	targets()
	if (mode == "missed") {
		n = split(units, us, " ")
		for (i = 1; i <= n; i++) if (us[i] in missed_unit) printf "%s ", us[i]
		print ""
		exit
	}
	if (mode == "plot") {
		split("fuse-overlayfs overlayfs", bases, " ")
		for (b = 1; b <= 2; b++) {
			if (!inlist(systems, bases[b])) continue
			print "# relative to " bases[b]
			printf "workload"
			for (j = 1; j <= nsys; j++) printf " %s", sys[j]
			print ""
			for (i = 1; i <= nids; i++) {
				printf "%s", ids[i]
				for (j = 1; j <= nsys; j++) { r = ratio(ids[i], sys[j], bases[b]); printf " %s", r == "" ? "NaN" : sprintf("%.4f", r) }
				print ""
			}
			print ""
			print ""
		}
		exit
	}

	print "# fhmap-unionfs against fuse-overlayfs, mergerfs and kernel overlayfs"
	print ""
	print "Written by `bench/union/run.sh` (" machine["date"] "). Every system gets a fresh union (new upper"
	print "layer, work directory and map) over the same lower tree for every workload, with `drop_caches` before it;"
	print "the systems take turns workload by workload, in an order rotated by round and workload, so that the"
	print "machine's noise falls on all of them alike. Times are seconds (lower is better): the median of the rounds,"
	print "min–max in brackets. The lower tree is a read-only bind mount, so no system can change it."
	print ""
	print "## Machine"
	print ""
	print "| | |"
	print "| --- | --- |"
	for (i = 1; i <= nm; i++) printf "| %s | %s |\n", mkeys[i], machine[mkeys[i]]
	if (busy != "") printf "| other busy processes (> 20%% CPU) | %s |\n", busy
	if ("measure" in secs) printf "| run time | %d s measuring, %d s profiling |\n", secs["measure"], secs["profile"]
	print ""
	print "## Reproduce"
	print ""
	print "```sh"
	print "cmake -S . -B build-union -DCMAKE_BUILD_TYPE=RelWithDebInfo && cmake --build build-union -j2"
	print cmd
	print "```"
	print ""
	print "`bench/union/run.sh -h` lists the options (rounds, subsets of workloads and systems, `-q` quick sizes,"
	print "profiles); `FHMAP_UNION_MODES` chooses the fhmap-unionfs configurations."
	print ""
	print "## Systems"
	print ""
	for (j = 1; j <= nsys; j++) {
		s = sys[j]; r = ""
		if (s == role["default"]) r = " — the daemon's default mode"
		if (s == role["full"]) r = r (r == "" ? " — " : ", ") "FULL sync (every map update durable before the reply)"
		printf "- **%s**%s: `%s`\n", s, r, sysdesc[s]
	}
	if (runnotes != "") { print ""; printf "%s", runnotes }
	print ""
	print "## Results (seconds; median, min–max)"
	print ""
	thead("workload", sys, nsys, "")
	for (i = 1; i <= nids; i++) {
		id = ids[i]
		printf "| `%s` %s |", id, desc[id]
		for (j = 1; j <= nsys; j++) printf " %s |", cell(id, sys[j])
		print ""
	}
	print ""
	for (i = 1; i <= nnotes; i++) printf "[%d] %s  \n", i, notes[i]
	print ""
	if (png != "") {
		print "![median time of each system relative to fuse-overlayfs and to kernel overlayfs, log scale](" png ")"
		print ""
	}
	print "## Ratios (median time of fhmap-unionfs / median time of the peer)"
	print ""
	printf "| workload |"
	for (j = 1; j <= nsys; j++) {
		if (sys[j] !~ /^fhmap-/) continue
		for (q = 1; q <= nsys; q++) if (sys[q] !~ /^fhmap-/) printf " %s / %s |", sys[j], sys[q]
	}
	print ""
	printf "| --- |"
	for (j = 1; j <= nsys; j++) if (sys[j] ~ /^fhmap-/) for (q = 1; q <= nsys; q++) if (sys[q] !~ /^fhmap-/) printf " ---: |"
	print ""
	for (i = 1; i <= nids; i++) {
		id = ids[i]
		printf "| `%s` |", id
		for (j = 1; j <= nsys; j++) {
			if (sys[j] !~ /^fhmap-/) continue
			for (q = 1; q <= nsys; q++) {
				if (sys[q] ~ /^fhmap-/) continue
				r = ratio(id, sys[j], sys[q])
				printf " %s |", r == "" ? "—" : fmtr(r) "×"
			}
		}
		print ""
	}
	print ""
	print "## Targets (issue 12)"
	print ""
	print "| target | configuration | result | worst | missed on |"
	print "| --- | --- | --- | --- | --- |"
	split("t1 t2 t3s t3c t3q t4 scale", tl, " ")
	for (t = 1; t <= 7; t++)
		for (j = 1; j <= nsys; j++)
			if ((tl[t] SUBSEP sys[j]) in tres) print tres[tl[t], sys[j]]
	if (role["default"] == "") {
		print ""
		print "The daemon's default mode was not recognised (set `FHMAP_UNION_DEFAULT`): the ≤ 1.0× target is not checked."
	}
	print ""
	print "Classes: stat = `stat`, `walk`, `meta*-stat`; copy-up = `copyup`; sequential I/O = `seqwrite`, `seqread`,"
	print "`fio-seq*`; creates = `create`, `create4p`, `meta*-create`."
	if (inlist(units, "meta1t") && inlist(units, "meta4t")) {
		print ""
		print "## Metadata scaling (1-thread time / 4-thread time for the same number of files; ≥ 1.8 is the target)"
		print ""
		thead("phase", sys, nsys, "")
		split("create stat rename unlink", ph, " ")
		for (p = 1; p <= 4; p++) {
			printf "| %s |", ph[p]
			for (j = 1; j <= nsys; j++) {
				a = med("meta1t-" ph[p], sys[j]); b = med("meta4t-" ph[p], sys[j])
				printf " %s |", (a != "" && b != "" && b > 0 ? sprintf("%.2f", a / b) : "—")
			}
			print ""
		}
	}
	print ""
	print "## Daemon CPU (seconds of user + system time of the FUSE daemon, median; in brackets its share of the wall time)"
	print ""
	print "A share near 100% on a single-threaded daemon means the daemon is the bottleneck; a low share means it waits"
	print "(for the disk, or for the kernel to send requests)."
	print ""
	thead("workload", sys, nsys, "overlayfs")
	n = split(units, us, " ")
	for (i = 1; i <= n; i++) {
		printf "| `%s` |", us[i]
		for (j = 1; j <= nsys; j++) {
			if (sys[j] == "overlayfs") continue
			k = us[i] SUBSEP sys[j]
			if (!(k in cpu)) { printf " — |"; continue }
			c = median(cpu[k]); w = median(wall[k])
			printf " %s (%.0f%%) |", fmt(c), (w > 0 ? 100 * c / w : 0)
		}
		print ""
	}
	for (pi = 1; pi <= nprof; pi++) {
		u = profiled[pi]
		if (pi == 1) {
			print ""
			print "## Profiles"
			print ""
			print "Each profiled workload ran once more per system, on a fresh union, outside the timed rounds: under"
			print "`strace -c -f -p` of the daemon with the kernel's FUSE requests to that mount counted, then (fhmap-unionfs"
			print "only) under `perf record -e cpu-clock -p` of the daemon. \"Per operation\" divides by the workload's"
			print "operation count (files, entries, MiB or I/Os)."
		}
		print ""
		printf "### `%s`%s\n", u, (unit_ops[u] > 1 ? " (" nice(unit_ops[u]) " operations)" : "")
		print ""
		pn = 0
		for (j = 1; j <= nsys; j++) if (((u SUBSEP sys[j]) in fr_total) || ((u SUBSEP sys[j]) in sc_total)) psys[++pn] = sys[j]
		if (!pn) { print "No profile was recorded (strace and perf missing, or the passes failed)."; continue }
		for (q = 1; q <= pn; q++) {
			k = u SUBSEP psys[q]
			line = "- **" psys[q] "**:"
			if (k in fr_total) line = line " " nice(fr_total[k]) " FUSE requests" perop(fr_total[k], u, "%.2f") ";"
			if (k in sc_total) {
				line = line " " nice(sc_total[k]) " daemon system calls" perop(sc_total[k], u, "%.1f")
				if ((k in fr_total) && fr_total[k] > 0) line = line sprintf(", %.1f per FUSE request", sc_total[k] / fr_total[k])
				line = line ", " nice(sc_sync[k]) " flushes (fsync, fdatasync, msync)" perop(sc_sync[k], u, "%.2f")
				line = line " taking " fmt(sc_sync_s[k] + 0) " s;"
			}
			if (k in cpu) line = line sprintf(" daemon CPU %s s of %s s in the timed rounds (median).", fmt(median(cpu[k])), fmt(median(wall[k])))
			sub(/;$/, ".", line)
			print line
		}
		if (fr_names[u] != "") {
			print ""
			printf "FUSE requests (%s):\n\n", fr_src[u] == "debug" ? "counted from the daemon's -d output" : "kernel tracepoint fuse:fuse_request_send"
			thead("request", psys, pn, "")
			m = byval(fr_names[u], fr, u SUBSEP psys[1], names)
			for (x = 1; x <= m; x++) {
				printf "| %s |", names[x]
				for (q = 1; q <= pn; q++) { k = u SUBSEP psys[q] SUBSEP names[x]; printf " %s |", (k in fr) ? nice(fr[k]) : "0" }
				print ""
			}
		}
		if (sc_names[u] != "") {
			print ""
			print "Daemon system calls (`strace -c -w -f`: calls, failed calls in brackets, then wall seconds in the call —"
			print "the daemon's idle wait for requests is in `read`; only calls above 1% of a daemon's calls or time):"
			print ""
			thead("system call", psys, pn, "")
			m = byval(sc_names[u], sc, u SUBSEP psys[1], names)
			for (x = 1; x <= m; x++) {
				show = 0
				for (q = 1; q <= pn; q++) {
					k = u SUBSEP psys[q]
					if (((k SUBSEP names[x]) in sc) && (sc[k, names[x]] * 100 >= sc_total[k] || sc_s[k, names[x]] * 100 >= sc_tsecs[k])) show = 1
				}
				if (!show) continue
				printf "| %s |", names[x]
				for (q = 1; q <= pn; q++) {
					k = u SUBSEP psys[q] SUBSEP names[x]
					printf " %s |", ((k in sc) ? nice(sc[k]) (sc_err[k] > 0 ? " (" nice(sc_err[k]) ")" : "") ", " fmt(sc_s[k] + 0) " s" : "0")
				}
				print ""
			}
			printf "| **total** |"
			for (q = 1; q <= pn; q++) { k = u SUBSEP psys[q]; printf " %s |", ((k in sc_total) ? nice(sc_total[k]) ", " fmt(sc_tsecs[k] + 0) " s" : "—") }
			print ""
		}
		for (q = 1; q <= pn; q++) {
			k = u SUBSEP psys[q]
			if (!(k in perf)) continue
			print ""
			d = perfdso[k]; sub(/^, /, "", d)
			printf "`perf record` of %s (share of the daemon's CPU samples; by object: %s; entries above 1%%):\n\n", psys[q], d
			print "| share | object | symbol |"
			print "| ---: | --- | --- |"
			printf "%s", perf[k]
		}
	}
}
