#!/usr/bin/env bash
# Build leafbench offline from Debian packages, the way
# ../shared/tools/gobench/build.sh builds gobench (GOPATH mode, no module proxy).
#
#   bash bench/go/leafbench/build.sh      # from the project root: target/tools/leafbench
#   OUT=/path/leafbench bash bench/go/leafbench/build.sh
#   SKIP_APT=1 bash bench/go/leafbench/build.sh   # build only
#
# nats.go 1.22.1 (golang-github-nats-io-go-nats-dev) needs nkeys (-> x/crypto)
# and nuid; all come from Debian. GO111MODULE=off, any Go >= 1.19.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT=${OUT:-$PWD/target/tools/leafbench}
mkdir -p "$(dirname "$OUT")"

PKGS=(golang-github-nats-io-go-nats-dev golang-github-nats-io-nkeys-dev
      golang-github-nats-io-nuid-dev golang-golang-x-crypto-dev golang-golang-x-sys-dev)
command -v go >/dev/null 2>&1 || PKGS+=(golang-go)

if [[ "${SKIP_APT:-0}" != 1 ]]; then
  missing=()
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "apt-get install ${missing[*]}" >&2
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

WORK="$(mktemp -d /tmp/leafbench-gopath.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/src/leafbench"
cp "$HERE/main.go" "$WORK/src/leafbench/"
export GO111MODULE=off GOFLAGS= CGO_ENABLED=0
export GOPATH="$WORK:/usr/share/gocode"
export GOCACHE="${GOCACHE:-/tmp/leafbench-gocache}"
(cd "$WORK/src/leafbench" && go vet . && go build -trimpath -o "$OUT" .)
echo "built $OUT ($(go version | awk '{print $3}'), nats.go $(dpkg-query -W -f='${Version}' golang-github-nats-io-go-nats-dev))" >&2
