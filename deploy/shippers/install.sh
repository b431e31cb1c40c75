#!/usr/bin/env bash
# Real log shippers for the listener and central-mode tests: rsyslog with omkafka and kcat from
# Debian packages, and syslog-ng (which conflicts with rsyslog as a package) unpacked into a private
# root under deploy/shippers/syslog-ng-root. A failed install is reported, not fatal: the tests that
# need the missing shipper skip with this reason (written to deploy/shippers/install-problems.txt).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/syslog-ng-root"
problems="$here/install-problems.txt"
: >"$problems"
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }

need=()
command -v rsyslogd >/dev/null || need+=(rsyslog)
[ -e /usr/lib/x86_64-linux-gnu/rsyslog/omkafka.so ] || ls /usr/lib/*/rsyslog/omkafka.so >/dev/null 2>&1 || need+=(rsyslog-kafka)
command -v kcat >/dev/null || need+=(kcat)
for lib in librdkafka1; do  # omkafka's; syslog-ng's libraries follow from its packages below
    dpkg-query -W -f='${Status}' "$lib" 2>/dev/null | grep -q "install ok installed" || need+=("$lib")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "shippers: installing ${need[*]}"
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -q -y install --no-install-recommends "${need[@]}" >/tmp/oomstream-shippers-apt.log 2>&1; then
        as_root apt-get -o DPkg::Lock::Timeout=600 -q update >/dev/null 2>&1
        as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -q -y install --no-install-recommends "${need[@]}" >/tmp/oomstream-shippers-apt.log 2>&1 \
            || echo "apt-get install ${need[*]} failed (see /tmp/oomstream-shippers-apt.log)" >>"$problems"
    fi
fi

if [ ! -x "$root/usr/sbin/syslog-ng" ]; then
    echo "shippers: unpacking syslog-ng into $root"
    work="$(mktemp -d)"
    download() { (cd "$work" && apt-get download syslog-ng-core syslog-ng-mod-rdkafka >/tmp/oomstream-syslog-ng-download.log 2>&1); }
    # A fresh machine may have no package lists yet: refresh them once and try again.
    if download || { as_root apt-get -o DPkg::Lock::Timeout=600 -q update >/dev/null 2>&1 && download; }; then
        mkdir -p "$root"
        for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$root"; done
        # Their libraries (glib, ivykis, librdkafka...) come from Debian as usual: the Depends of
        # the two packages, first alternative, without versions and without syslog-ng itself.
        libs=$(for deb in "$work"/*.deb; do dpkg-deb -f "$deb" Depends; done | tr ',' '\n' \
            | sed -e 's/|.*//' -e 's/(.*)//' -e 's/[[:space:]]//g' | grep -v '^syslog-ng' | sort -u)
        missing=()
        for lib in $libs; do
            dpkg-query -W -f='${Status}' "$lib" 2>/dev/null | grep -q "install ok installed" || missing+=("$lib")
        done
        if [ ${#missing[@]} -gt 0 ]; then
            as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -q -y install \
                --no-install-recommends "${missing[@]}" >>/tmp/oomstream-shippers-apt.log 2>&1 \
                || echo "apt-get install ${missing[*]} (syslog-ng's libraries) failed" >>"$problems"
        fi
    else
        echo "apt-get download syslog-ng-core syslog-ng-mod-rdkafka failed (see /tmp/oomstream-syslog-ng-download.log)" >>"$problems"
    fi
    rm -rf "$work"
fi
if [ -s "$problems" ]; then
    echo "shippers: not everything installed (the tests that need it skip):"; cat "$problems"
else
    echo "shippers: rsyslog $(rsyslogd -v 2>/dev/null | awk 'NR==1 {print $2}'), syslog-ng in $root, kcat ready"
fi
exit 0
