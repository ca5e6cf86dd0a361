#!/usr/bin/env bash
# Builds the Debian and RPM packages of Broker Edge into target/packages/.
#
# Usage: packaging/build.sh [VERSION]
#   VERSION          upstream version (default: the workspace version in
#                    Cargo.toml); the .deb gets VERSION-1, the .rpm VERSION-1.
#   BROKER_EDGE_NO_BUILD=1  reuse target/release/broker-edge{,-bench} instead of
#                    running `cargo build --release` (they must exist).
#
# The .deb is assembled with dpkg-deb from a staged tree (no cargo-deb); the
# .rpm with rpmbuild and packaging/rpm/broker-edge.spec when rpmbuild is
# installed (`apt-get install rpm` on Debian), else it is skipped with a note.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
umask 022

version=${1:-$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)}
[ -n "$version" ] || { echo "build.sh: no version" >&2; exit 1; }
case $version in *[!0-9A-Za-z.+~]*) echo "build.sh: bad version '$version'" >&2; exit 1;; esac
revision=1
out=$root/target/packages
work=$out/work
bin=$root/target/release
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}

if [ "${BROKER_EDGE_NO_BUILD:-}" = 1 ] && [ -x "$bin/broker-edge" ] && [ -x "$bin/broker-edge-bench" ]; then
  echo "--- reusing $bin/broker-edge{,-bench}"
else
  echo "--- cargo build --release (broker-edge, broker-edge-bench)"
  cargo build --release -p broker-edge -p broker-edge-bench --bin broker-edge --bin broker-edge-bench
fi

rm -rf "$work"
mkdir -p "$out" "$work"

# The files both packages install, staged once under $work/root.
stage=$work/root
install -d "$stage/usr/bin" "$stage/etc/broker-edge" "$stage/usr/lib/sysusers.d" \
  "$stage/usr/lib/tmpfiles.d" "$stage/usr/share/man/man1" "$stage/usr/share/doc/broker-edge"
for b in broker-edge broker-edge-bench; do
  install -m 0755 "$bin/$b" "$stage/usr/bin/$b"
  strip --strip-unneeded --remove-section=.comment --remove-section=.note "$stage/usr/bin/$b"
done
install -m 0640 packaging/broker-edge.conf "$stage/etc/broker-edge/broker-edge.conf"
install -m 0644 packaging/sysusers.conf "$stage/usr/lib/sysusers.d/broker-edge.conf"
install -m 0644 packaging/tmpfiles.conf "$stage/usr/lib/tmpfiles.d/broker-edge.conf"
install -m 0644 README.md "$stage/usr/share/doc/broker-edge/README.md"

# The shipped config must be one the binary accepts.
"$stage/usr/bin/broker-edge" -t -c packaging/broker-edge.conf >/dev/null 2>&1 ||
  { "$stage/usr/bin/broker-edge" -t -c packaging/broker-edge.conf; exit 1; }

# Man pages from --help: the text as is, in a no-fill block.
manpage() { # name summary
  local date
  date=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%d)
  printf '.TH %s 1 "%s" "%s %s" "User Commands"\n' "$(echo "$1" | tr a-z A-Z | sed 's/-/\\-/g')" "$date" "$1" "$version"
  printf '.SH NAME\n%s \\- %s\n' "$(echo "$1" | sed 's/-/\\-/g')" "$2"
  printf '.SH DESCRIPTION\nThe text of\n.B %s \\-\\-help\nfollows.\n.PP\n.nf\n' "$(echo "$1" | sed 's/-/\\-/g')"
  "$stage/usr/bin/$1" --help | sed -e 's/\\/\\e/g' -e 's/-/\\-/g' -e "s/^\([.']\)/\\\\\&\1/"
  printf '.fi\n.SH FILES\n/etc/broker\\-edge/broker\\-edge.conf, /var/lib/broker\\-edge\n'
  printf '.SH SEE ALSO\n/usr/share/doc/broker\\-edge/README.md\n'
}
manpage broker-edge "NATS-compatible thread-per-core message broker" | gzip -9n > "$stage/usr/share/man/man1/broker-edge.1.gz"
manpage broker-edge-bench "load generator for NATS servers and Broker Edge" | gzip -9n > "$stage/usr/share/man/man1/broker-edge-bench.1.gz"
chmod 0644 "$stage"/usr/share/man/man1/*.gz

# ---------------------------------------------------------------- .deb
arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
deb=$work/deb
cp -a "$stage" "$deb"
install -d "$deb/lib/systemd/system" "$deb/usr/share/lintian/overrides" "$deb/DEBIAN"
install -m 0644 systemd/broker-edge.service "$deb/lib/systemd/system/broker-edge.service"
install -m 0644 packaging/debian/copyright "$deb/usr/share/doc/broker-edge/copyright"
install -m 0644 packaging/debian/lintian-overrides "$deb/usr/share/lintian/overrides/broker-edge"
rfc2822=$(LC_ALL=C date -u -R -d "@$SOURCE_DATE_EPOCH")
printf 'broker-edge (%s-%s) unstable; urgency=medium\n\n  * Package of Broker Edge %s.\n\n -- Broker Edge developers <broker-edge@example.org>  %s\n' \
  "$version" "$revision" "$version" "$rfc2822" | gzip -9n > "$deb/usr/share/doc/broker-edge/changelog.Debian.gz"
chmod 0644 "$deb/usr/share/doc/broker-edge/changelog.Debian.gz"
for s in postinst prerm postrm; do install -m 0755 "packaging/debian/$s" "$deb/DEBIAN/$s"; done
echo /etc/broker-edge/broker-edge.conf > "$deb/DEBIAN/conffiles"
chmod 0644 "$deb/DEBIAN/conffiles"

# Library dependencies: dpkg-shlibdeps when dpkg-dev is there.
depends="libc6 (>= 2.34), libgcc-s1 (>= 4.2)"
if command -v dpkg-shlibdeps >/dev/null 2>&1; then
  shl=$work/shlibdeps
  mkdir -p "$shl/debian"
  printf 'Source: broker-edge\n\nPackage: broker-edge\nArchitecture: any\n' > "$shl/debian/control"
  if d=$(cd "$shl" && dpkg-shlibdeps -O "$deb/usr/bin/broker-edge" "$deb/usr/bin/broker-edge-bench" 2>/dev/null); then
    depends=${d#shlibs:Depends=}
  fi
fi
size=$(du -sk --exclude=DEBIAN "$deb" | cut -f1)
cat > "$deb/DEBIAN/control" <<CONTROL
Package: broker-edge
Version: $version-$revision
Architecture: $arch
Maintainer: Broker Edge developers <broker-edge@example.org>
Installed-Size: $size
Depends: $depends, adduser
Section: net
Priority: optional
Description: NATS-compatible thread-per-core message broker
 Broker Edge speaks the NATS client protocol and JetStream, runs one
 shard per CPU on io_uring, and is packaged for Linux appliances: a
 systemd unit (Type=notify, watchdog), a system user and a default
 configuration for an appliance (clients on port 4223, monitoring on
 127.0.0.1:8223, JetStream data in /var/lib/broker-edge).
 .
 The package also holds broker-edge-bench, a load generator.
CONTROL
chmod 0644 "$deb/DEBIAN/control"
# md5sums of everything but the conffiles (as dh_md5sums does).
(cd "$deb" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | LC_ALL=C sort |
  grep -vxF -f <(sed 's|^/||' DEBIAN/conffiles) | xargs md5sum) > "$deb/DEBIAN/md5sums"
chmod 0644 "$deb/DEBIAN/md5sums"
find "$deb" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
debfile=$out/broker-edge_${version}-${revision}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$deb" "$debfile" >/dev/null
echo "--- $debfile"

# ---------------------------------------------------------------- .rpm
if command -v rpmbuild >/dev/null 2>&1; then
  rpmtop=$work/rpmbuild
  mkdir -p "$rpmtop"/{BUILD,RPMS,SRPMS,SPECS,SOURCES,BUILDROOT}
  install -m 0644 systemd/broker-edge.service "$stage/broker-edge.service"
  rpmbuild -bb --quiet \
    --define "_topdir $rpmtop" \
    --define "_staged $stage" \
    --define "_rpmdir $out" \
    --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
    --define "be_version $version" \
    --define "be_release $revision" \
    --define "_specdir $root/packaging/rpm" \
    --define "use_source_date_epoch_as_buildtime 1" \
    --define "clamp_mtime_to_source_date_epoch 1" \
    --define "_buildhost reproducible" \
    --nodeps "$root/packaging/rpm/broker-edge.spec"
  echo "--- $(ls "$out"/broker-edge-"$version"-"$revision".*.rpm)"
else
  echo "--- rpmbuild not installed (apt-get install rpm): no .rpm built" >&2
fi
rm -rf "$work"
