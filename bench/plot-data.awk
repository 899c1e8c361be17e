# Extracts plot rows from fhmap-bench output:
#   block 0: scale objects, fhmap_decode, floor, sqlite_decode medians (ns, 1 thread)
#   block 1: e2e method index, hot median, cold median (ns)
function objects(l) { n = l + 0; if (l ~ /M$/) n *= 1000000; else if (l ~ /k$/) n *= 1000; return n }
$1 == "@lat" && $2 != "e2e" && $4 == 1 { lat[$2, $3] = $5; scales[$2] = objects($2) }
$1 == "@lat" && $2 == "e2e" { e2e[$3] = $5 }
END {
	n = 0
	for (s in scales)
		order[++n] = s
	for (i = 1; i <= n; i++)
		for (j = i + 1; j <= n; j++)
			if (scales[order[j]] < scales[order[i]]) { t = order[i]; order[i] = order[j]; order[j] = t }
	print "# objects fhmap_decode floor_mdb_get sqlite_decode floor_named_mdb_get"
	for (i = 1; i <= n; i++) {
		s = order[i]
		printf "%d %s %s %s %s\n", scales[s], lat[s, "fhmap_decode"], lat[s, "floor_mdb_get"],
		       ((s SUBSEP "sqlite_decode") in lat) ? lat[s, "sqlite_decode"] : "NaN", lat[s, "floor_named_mdb_get"]
	}
	print ""
	print ""
	print "# method hot cold"
	split("ext4_open_by_handle fhmap_decode_open_real overlayfs_open_by_handle", m, " ")
	names[1] = "raw ext4"; names[2] = "libfhmap"; names[3] = "overlayfs"
	for (i = 1; i <= 3; i++)
		if (("e2e_" m[i] "_hot") in e2e)
			printf "\"%s\" %s %s\n", names[i], e2e["e2e_" m[i] "_hot"], e2e["e2e_" m[i] "_cold"]
}
