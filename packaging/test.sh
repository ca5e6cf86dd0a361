#!/usr/bin/env bash
# Package test (issue 21): builds the .deb and .rpm (packaging/build.sh),
# runs lintian on the .deb, checks the .rpm's metadata and file list, then
# installs the .deb system-wide with dpkg, starts the installed binary with
# the installed config as the service user (no systemd needed), checks
# /healthz and a JetStream stream, upgrades to a rebuilt package with a
# higher version (data and a local config edit kept), removes (data kept)
# and purges (data and user gone). Exits non-zero on the first failure and
# purges what it installed.
#
# Needs root, dpkg and curl; installs lintian with apt-get if missing. Uses
# target/refs/bin/nats (scripts/install-refs) for the stream checks and
# skips them with a note without it. The release build is reused when
# BROKER_EDGE_NO_BUILD=1 and target/release has the binaries; otherwise
# build.sh runs `cargo build --release` once (a no-op when up to date).
# Ports: 4223 (clients) and 127.0.0.1:8223 (monitoring) must be free.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
start_time=$(date +%s)

fail() { echo "packaging/test.sh: FAIL: $*" >&2; exit 1; }
step() { echo "--- $*"; }
[ "$(id -u)" = 0 ] || fail "must run as root (installs a package)"
command -v dpkg >/dev/null || fail "dpkg not found"
command -v curl >/dev/null || fail "curl not found"
if dpkg-query -W -f='${Status}' broker-edge 2>/dev/null | grep -q 'install ok\|config-files'; then
  fail "broker-edge is already installed here; purge it first (dpkg -P broker-edge)"
fi

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
# The upgrade: the same binaries packaged with the patch level + 1.
upgrade=$(echo "$version" | awk -F. -v OFS=. '{ $NF = $NF + 1; print }')
arch=$(dpkg --print-architecture)
out=$root/target/packages
deb1=$out/broker-edge_${version}-1_${arch}.deb
deb2=$out/broker-edge_${upgrade}-1_${arch}.deb
tmp=$(mktemp -d)
pid=
nats=$root/target/refs/bin/nats
[ -x "$nats" ] || nats=

cleanup() {
  rc=$?
  set +e
  stop_server
  if dpkg-query -W -f='${Status}' broker-edge 2>/dev/null | grep -q 'install ok\|config-files\|half'; then
    dpkg -P broker-edge >/dev/null 2>&1
  fi
  rm -f "$deb2" "$out/broker-edge-${upgrade}-1".*.rpm
  rm -rf "$tmp"
  if [ $rc = 0 ]; then
    echo "--- packaging test passed in $(( $(date +%s) - start_time )) s"
  else
    echo "--- packaging test FAILED (rc $rc) after $(( $(date +%s) - start_time )) s" >&2
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop_server() {
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    echo "server did not stop within 30 s of SIGTERM" >&2
    pid=; return 1
  fi
  wait "$pid" 2>/dev/null || true
  pid=
}

start_server() { # log file
  ! curl -s -o /dev/null http://127.0.0.1:8223/healthz || fail "something already listens on 127.0.0.1:8223"
  runuser -u broker-edge -- /usr/bin/broker-edge -c /etc/broker-edge/broker-edge.conf >"$1" 2>&1 &
  pid=$!
  for _ in $(seq 1 200); do
    if curl -s http://127.0.0.1:8223/healthz 2>/dev/null | grep -q '"ok"'; then
      echo "healthz: $(curl -s http://127.0.0.1:8223/healthz)"
      # The appliance profile's leaf port listens (/varz shows it).
      curl -s http://127.0.0.1:8223/varz | python3 -c 'import json,sys; assert json.load(sys.stdin)["leaf"]["port"] == 4443' ||
        fail "/varz does not show the leaf port 4443"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || { cat "$1" >&2; pid=; fail "server exited at startup"; }
    sleep 0.1
  done
  cat "$1" >&2
  fail "/healthz did not say ok within 20 s"
}

js() { HOME=$tmp "$nats" --server nats://127.0.0.1:4223 --timeout 5s "$@"; }
stream_msgs() { js stream info PKGTEST --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"]["messages"])'; }

expect_stat() { # path mode user group
  local got
  got=$(stat -c '%a %U %G' "$1") || fail "$1 missing"
  [ "$got" = "$2 $3 $4" ] || fail "$1 is '$got', want '$2 $3 $4'"
}

# ------------------------------------------------------------------ build
step "build $version and $upgrade"
packaging/build.sh "$version"
BROKER_EDGE_NO_BUILD=1 packaging/build.sh "$upgrade"
[ -f "$deb1" ] && [ -f "$deb2" ] || fail "build.sh did not produce $deb1 and $deb2"

# ------------------------------------------------------------------ lintian
if ! command -v lintian >/dev/null; then
  step "installing lintian"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lintian >/dev/null ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lintian >/dev/null; }
fi
step "lintian (errors, warnings and info fail; overrides in packaging/debian/lintian-overrides)"
lintian --pedantic --display-info --fail-on error,warning,info,pedantic "$deb1" 2> >(grep -v 'root privileges' >&2) ||
  fail "lintian"
echo "lintian: clean"

# ------------------------------------------------------------------ rpm
rpm1=$(ls "$out/broker-edge-${version}-1".*.rpm 2>/dev/null | head -1 || true)
if [ -n "$rpm1" ] && command -v rpm >/dev/null; then
  step "rpm metadata and file list ($rpm1)"
  rpm -qip "$rpm1"
  [ "$(rpm -qp --qf '%{NAME} %{VERSION} %{RELEASE} %{LICENSE}' "$rpm1")" = "broker-edge $version 1 Apache-2.0" ] ||
    fail "rpm name/version/release/license"
  rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpm1" > "$tmp/rpm-files"
  cat "$tmp/rpm-files"
  for want in \
    '-rwxr-xr-x root root  /usr/bin/broker-edge' \
    '-rwxr-xr-x root root  /usr/bin/broker-edge-bench' \
    '-rw-r----- root broker-edge cn /etc/broker-edge/broker-edge.conf' \
    '-rw-r--r-- root root  /usr/lib/systemd/system/broker-edge.service' \
    '-rw-r--r-- root root  /usr/lib/sysusers.d/broker-edge.conf' \
    '-rw-r--r-- root root  /usr/lib/tmpfiles.d/broker-edge.conf' \
    '-rw-r--r-- root root d /usr/share/man/man1/broker-edge.1.gz' \
    '-rw-r--r-- root root l /usr/share/licenses/broker-edge/copyright' \
    'drwxr-x--- broker-edge broker-edge  /var/lib/broker-edge'; do
    grep -qxF -- "$want" "$tmp/rpm-files" || fail "rpm file list lacks '$want'"
  done
  for s in PREIN POSTIN PREUN POSTUN; do
    [ -n "$(rpm -qp --qf "%{$s}" "$rpm1" | grep -v '^(none)$')" ] || fail "rpm has no $s scriptlet"
  done
else
  echo "note: no .rpm or no rpm command: rpm checks skipped"
fi

# ------------------------------------------------------------------ install
step "dpkg -i $deb1"
dpkg -i "$deb1"
[ "$(dpkg-query -W -f='${Version}' broker-edge)" = "$version-1" ] || fail "installed version"
getent passwd broker-edge >/dev/null || fail "no broker-edge user"
getent group broker-edge >/dev/null || fail "no broker-edge group"
expect_stat /etc/broker-edge/broker-edge.conf 640 root broker-edge
expect_stat /var/lib/broker-edge 750 broker-edge broker-edge
expect_stat /usr/bin/broker-edge 755 root root
expect_stat /usr/bin/broker-edge-bench 755 root root
for f in /lib/systemd/system/broker-edge.service /usr/lib/sysusers.d/broker-edge.conf \
  /usr/lib/tmpfiles.d/broker-edge.conf /usr/share/man/man1/broker-edge.1.gz \
  /usr/share/man/man1/broker-edge-bench.1.gz /usr/share/doc/broker-edge/copyright \
  /usr/share/doc/broker-edge/changelog.Debian.gz /usr/share/lintian/overrides/broker-edge; do
  expect_stat "$f" 644 root root
done
grep -qx '/etc/broker-edge/broker-edge.conf' /var/lib/dpkg/info/broker-edge.conffiles || fail "config is not a conffile"
# Enabled the way dh_installsystemd does it, even without systemd running.
[ -L /etc/systemd/system/multi-user.target.wants/broker-edge.service ] || fail "unit not enabled"
runuser -u broker-edge -- /usr/bin/broker-edge -t -c /etc/broker-edge/broker-edge.conf ||
  fail "the service user cannot read or use the installed config"
if [ -d /run/systemd/system ]; then
  echo "note: systemd is PID 1 here; stopping the unit postinst started"
  systemctl stop broker-edge.service || true
fi

step "start the installed server as broker-edge (without systemd)"
start_server "$tmp/server1.log"
if [ -n "$nats" ]; then
  js stream add PKGTEST --subjects 'pkgtest.>' --storage file --defaults >/dev/null || fail "stream add"
  js pub pkgtest.a 'kept across upgrades' >/dev/null 2>&1 || fail "publish"
  [ "$(stream_msgs)" = 1 ] || fail "stream PKGTEST does not hold the message"
  echo "stream PKGTEST created, 1 message stored"
  # The appliance profile's declared streams and buckets exist.
  for st in DATA EVENTS LOGS METRICS STATUSES KV_SERVERS KV_EXPORTERS; do
    for _ in $(seq 1 50); do js stream info "$st" --json >/dev/null 2>&1 && break; sleep 0.1; done
    js stream info "$st" --json >/dev/null 2>&1 || fail "provisioned stream $st missing"
  done
  echo "provisioned streams and buckets present"
else
  echo "note: target/refs/bin/nats missing (scripts/install-refs): stream checks skipped"
fi
stop_server || fail "stop"
[ -n "$(find /var/lib/broker-edge -mindepth 1 -print -quit)" ] || [ -z "$nats" ] || fail "/var/lib/broker-edge is empty"
echo "# local edit, must survive the upgrade" >> /etc/broker-edge/broker-edge.conf

# ------------------------------------------------------------------ upgrade
step "upgrade: dpkg -i $deb2"
find /var/lib/broker-edge | LC_ALL=C sort > "$tmp/data-before"
dpkg -i "$deb2" </dev/null
[ "$(dpkg-query -W -f='${Version}' broker-edge)" = "$upgrade-1" ] || fail "upgraded version"
find /var/lib/broker-edge | LC_ALL=C sort > "$tmp/data-after"
cmp -s "$tmp/data-before" "$tmp/data-after" || { diff "$tmp/data-before" "$tmp/data-after"; fail "data directory changed on upgrade"; }
grep -q 'local edit' /etc/broker-edge/broker-edge.conf || fail "local config edit lost on upgrade"
expect_stat /etc/broker-edge/broker-edge.conf 640 root broker-edge
expect_stat /var/lib/broker-edge 750 broker-edge broker-edge
[ -d /run/systemd/system ] && { systemctl stop broker-edge.service || true; }
start_server "$tmp/server2.log"
if [ -n "$nats" ]; then
  [ "$(stream_msgs)" = 1 ] || fail "stream PKGTEST lost its message across the upgrade"
  echo "stream PKGTEST recovered with its message"
fi
stop_server || fail "stop"

# ------------------------------------------------------------------ remove
step "dpkg -r (data kept)"
dpkg -r broker-edge
[ ! -e /usr/bin/broker-edge ] || fail "/usr/bin/broker-edge left after remove"
[ -f /etc/broker-edge/broker-edge.conf ] || fail "conffile removed by remove"
[ -d /var/lib/broker-edge ] || fail "/var/lib/broker-edge removed by remove"
[ -z "$nats" ] || [ -n "$(find /var/lib/broker-edge -mindepth 1 -print -quit)" ] || fail "data removed by remove"
getent passwd broker-edge >/dev/null || fail "user removed by remove"

step "dpkg -P (data and user gone)"
dpkg -P broker-edge
[ ! -e /etc/broker-edge/broker-edge.conf ] || fail "conffile left after purge"
[ ! -e /var/lib/broker-edge ] || fail "/var/lib/broker-edge left after purge"
! getent passwd broker-edge >/dev/null || fail "user left after purge"
! getent group broker-edge >/dev/null || fail "group left after purge"
[ ! -e /etc/systemd/system/multi-user.target.wants/broker-edge.service ] || fail "enable symlink left after purge"
dpkg-query -W broker-edge >/dev/null 2>&1 && fail "dpkg still knows broker-edge"
exit 0
