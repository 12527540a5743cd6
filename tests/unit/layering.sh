#!/bin/sh
#
# Layering: the core objects (the ESXi side and the console core) must
# not reach the layers above them by name.  They talk to the cluster
# through core_hooks (node/core.c), to the store through store.h's
# vtable, and leave the hand-over records to the *-handoff.c files.
#
# Runs nm -u on each core object in libvspc.a (whatever name automake
# gave it: console.o, or libvspc_a-console.o with per-target flags) and
# fails, listing them, on undefined symbols of the cluster, peer link,
# control socket, hand-over, Redis store or HTTP.  Every core object must
# be found: a check of nothing is a failure, not a pass.

NM=${NM:-nm}
lib=${TOP_BUILDDIR:-.}/libvspc.a
core="telnet vmconn vmotion console ring logfile client"
banned='^(cluster_|peer_|control_|store_redis_|http_|handoff_)'

if [ ! -f "$lib" ]; then
	echo "FAIL: $lib not built"
	exit 99
fi
members=$(ar t "$lib") || exit 99

fail=0
for m in $core; do
	obj=$(printf '%s\n' "$members" |
	    grep -E "^(libvspc_a-)?$m\.o$" | head -n 1)
	if [ -z "$obj" ]; then
		echo "FAIL: no object for node/$m.c in $lib"
		fail=1
		continue
	fi
	# "nm -u" on an archive prints every member; keep this one's part.
	bad=$($NM -u "$lib" 2>/dev/null | awk -v obj="$obj:" '
	    /:$/ { on = ($0 == obj); next }
	    on && NF >= 2 { print $NF }' | grep -E "$banned")
	if [ -n "$bad" ]; then
		echo "FAIL: $obj uses the layers above the core:"
		printf '    %s\n' $bad
		fail=1
	else
		echo "ok: $obj"
	fi
done
exit $fail
