#!/bin/sh
# Installs what the e2e bench needs on a fresh Debian machine that has Go and
# Node 20: Debian packages when missing, and the pinned npm fixtures from
# e2e/package-lock.json (skipped when node_modules matches the lockfile).
# Idempotent; prints what it installs; fails loudly when it cannot.
set -eu
cd "$(dirname "$0")/.."

need=""
# buildah: builds and runs the container image (e2e/container_test.go).
# haproxy: the load balancer in front of the replicas (e2e/cluster.go).
for pkg in buildah chromium dbus gnome-keyring haproxy postgresql redis-server; do
	if ! dpkg -s "$pkg" >/dev/null 2>&1; then
		need="$need $pkg"
	fi
done
if [ -n "$need" ]; then
	echo "deps: installing Debian packages:$need"
	SUDO=""
	if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $need >/dev/null
	echo "deps: Debian packages installed"
fi

stamp=e2e/node_modules/.lock-sha256
want=$(sha256sum e2e/package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
	echo "deps: npm ci in e2e/ (pinned by package-lock.json)"
	(cd e2e && npm ci --no-audit --no-fund --loglevel=error)
	echo "$want" > "$stamp"
fi
e2e/node_modules/node/bin/node --version >/dev/null || { echo "deps: Node 22 from npm is not runnable" >&2; exit 1; }
echo "deps: ready (Node 22 $(e2e/node_modules/node/bin/node --version), chromium $(chromium --version 2>/dev/null | awk '{print $2}'))"
