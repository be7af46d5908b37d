#!/usr/bin/env bash
# The tray app's end-to-end test (scripts/desktop_test.py): builds the shell
# (src-tauri/) and its .deb package, then runs it under a virtual X server and a private D-Bus session, with
# the test playing the tray host, the notification server and a mock upstream.
# Arguments go to desktop_test.py (`--memory 5` also measures memory over five
# open/close cycles of the window, for bench/README.md; with CARPOOL_DESKTOP_RELEASE=1
# the release build is tested).
#
# Needs (Debian): the Tauri build packages (libwebkit2gtk-4.1-dev
# libayatana-appindicator3-dev librsvg2-dev libxdo-dev libsoup-3.0-dev), and to run it
# xvfb xauth dbus python3-dbus python3-gi python3-xlib xclip imagemagick.
# CARPOOL_TEST_PYTHON: a Python with the anthropic SDK (scripts/test.sh makes one).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
die() {
    printf 'scripts/desktop-test.sh: %s\n' "$*" >&2
    exit 1
}
for tool in xvfb-run dbus-run-session xclip import; do
    command -v "$tool" >/dev/null || die "$tool not found (Debian: apt install xvfb dbus xclip imagemagick)"
done
/usr/bin/python3 -c 'import dbus, gi, Xlib' 2>/dev/null ||
    die "Debian's python3-dbus, python3-gi and python3-xlib are needed (apt install python3-dbus python3-gi python3-xlib)"

# Built by Tauri's bundler, as a person's `.deb` is (the binary it patches is the one
# tested), then the package's contents checked. CARPOOL_DESKTOP_RELEASE=1: the release
# build (what a person installs; the memory figures in bench/README.md are of it).
TAURI="$ROOT/ui/node_modules/.bin/tauri"
[ -x "$TAURI" ] || die "Tauri's CLI is missing: run (cd ui && npm ci)"
if [ "${CARPOOL_DESKTOP_RELEASE:-}" = 1 ]; then
    PROFILE=release
    TAURI_APP_PATH=src-tauri "$TAURI" build --bundles deb
else
    PROFILE=debug
    TAURI_APP_PATH=src-tauri "$TAURI" build --debug --bundles deb
fi
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' src-tauri/Cargo.toml | head -n 1)"
DEB="$ROOT/target/$PROFILE/bundle/deb/Carpool_${VERSION}_$(dpkg --print-architecture 2>/dev/null || echo amd64).deb"
[ -f "$DEB" ] || die "no package at $DEB"
CONTENTS="$(dpkg-deb -c "$DEB")"
for file in usr/bin/carpool-desktop usr/share/applications/Carpool.desktop \
    usr/share/icons/hicolor/128x128/apps/carpool-desktop.png; do
    grep -q " \./$file\$\| $file\$" <<<"$CONTENTS" || die "$DEB lacks $file"
done
dpkg-deb -f "$DEB" Depends | grep -q libwebkit2gtk-4.1 || die "$DEB does not depend on WebKitGTK"
echo "package: $DEB ($(du -h "$DEB" | cut -f1))"
export CARPOOL_DESKTOP="$ROOT/target/$PROFILE/carpool-desktop"
export CARPOOL_SCREENSHOTS="${CARPOOL_SCREENSHOTS:-$ROOT/target/desktop-test}"
export CARPOOL_TEST_PYTHON="${CARPOOL_TEST_PYTHON:-$ROOT/.test-deps/venv/bin/python}"
# dbus-run-session: the app's D-Bus calls (tray, notifications, single instance) stay
# in a session of the test's own that ends with it. HOME: a throwaway one for everything
# in that session (services it starts, such as a keyring daemon, write under it).
# Desktop services the session starts may mount FUSE file systems under it (GTK asks
# xdg-desktop-portal, which starts xdg-document-portal and mounts ~/.cache/doc) and
# outlive the bus: unmount those before removing the directory, and let a directory
# that still cannot go be a warning, not the test's result.
SESSION_HOME="$(mktemp -d)"
remove_session_home() {
    local mount
    while read -r _ mount _; do
        case "$mount" in
        "$SESSION_HOME"/*) fusermount3 -uz "$mount" 2>/dev/null || fusermount -uz "$mount" 2>/dev/null ||
            umount -l "$mount" 2>/dev/null || true ;;
        esac
    done </proc/mounts
    rm -rf "$SESSION_HOME" 2>/dev/null || echo "scripts/desktop-test.sh: warning: could not remove $SESSION_HOME" >&2
}
trap remove_session_home EXIT
HOME="$SESSION_HOME" xvfb-run -a -s "-screen 0 1280x800x24" \
    dbus-run-session -- /usr/bin/python3 scripts/desktop_test.py "$@"
