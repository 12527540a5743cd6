#!/bin/sh
# Set up a Debian 12 machine for vspcd and build it, then either start one
# node in the foreground (run) or run the whole test suite (check).
#
#	deploy/bootstrap.sh run [vspcd options]
#	deploy/bootstrap.sh check
#
# Run as root from the top of a source tree.  Packages already installed
# are left alone.
set -eu

cd "$(dirname "$0")/.."
what=${1:-run}
[ $# -gt 0 ] && shift

build_deps="build-essential autoconf automake pkg-config libevent-dev
libssl-dev libhiredis-dev libprotobuf-c-dev protobuf-c-compiler
libinih-dev libcmocka-dev libsystemd-dev libcrypt-dev"
test_deps="python3 clang libclang-rt-14-dev redis-server haproxy systemd
logrotate keepalived iproute2"

missing=""
for p in $build_deps $( [ "$what" = check ] && echo "$test_deps" ); do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
	    grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "bootstrap: installing$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing
fi

jobs=$(nproc 2>/dev/null || echo 2)
[ -x configure ] || autoreconf -fi

case "$what" in
run)
	mkdir -p build
	( cd build && { [ -f Makefile ] || ../configure -q; } && make -s -j"$jobs" )
	mkdir -p /var/log/vspcd/consoles
	echo "bootstrap: starting vspcd in the foreground (^C stops it)"
	exec build/vspcd -d -f deploy/vspcd.conf "$@"
	;;
check)
	# The suite, built with warnings as errors...
	rm -rf build-check && mkdir build-check
	( cd build-check && ../configure -q --enable-werror &&
	    make -s -j"$jobs" && make -s -j"$jobs" check ) || {
		cat build-check/test-suite.log 2>/dev/null | tail -200
		exit 1
	}
	# ...then once more under AddressSanitizer and UBSan.
	rm -rf build-asan && mkdir build-asan
	( cd build-asan && ../configure -q --enable-werror --enable-asan \
	    CC=clang &&
	    make -s -j"$jobs" && ASAN_OPTIONS=detect_leaks=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    make -s -j"$jobs" check ) || {
		cat build-asan/test-suite.log 2>/dev/null | tail -200
		exit 1
	}
	echo "bootstrap: all tests passed (normal and ASan+UBSan builds)"
	;;
*)
	echo "usage: $0 run [vspcd options] | check" >&2
	exit 1
	;;
esac
