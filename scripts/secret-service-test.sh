#!/usr/bin/env bash
# A real Secret Service round trip (tests/secret_service.rs): the OS keyring Carpool uses
# on Linux for the secrets it obtains itself, exercised over D-Bus against a running
# gnome-keyring, not a mock. Needs dbus-run-session and gnome-keyring-daemon (Debian:
# apt install dbus-daemon gnome-keyring). Arguments go to `cargo test`.
#
# Everything is throwaway: a private D-Bus session bus (dbus-run-session, gone when the
# run ends, and gnome-keyring-daemon with it), and a keyring created and unlocked with
# a fixed password in a temporary HOME (gnome-keyring keeps its keyrings in
# ~/.local/share/keyrings). The developer's own session and keyring are not touched.
# CARPOOL_REQUIRE_SECRET_SERVICE=1 makes the test fail if the Secret Service is not there.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
die() {
    printf 'scripts/secret-service-test.sh: %s\n' "$*" >&2
    exit 1
}
command -v dbus-run-session >/dev/null || die "dbus-run-session not found (Debian: apt install dbus-daemon)"
command -v gnome-keyring-daemon >/dev/null || die "gnome-keyring-daemon not found (Debian: apt install gnome-keyring)"

# Built first, with the real HOME (cargo and rustup live under it).
cargo test --test secret_service --no-run "$@"

KEYRING_HOME="$(mktemp -d)"
trap 'rm -rf "$KEYRING_HOME"' EXIT
export KEYRING_HOME

# Inside the session: start the daemon with only the Secret Service component, creating
# and unlocking the login keyring with the password on stdin (it daemonizes once its
# D-Bus names are taken), then run the test.
dbus-run-session -- bash -euo pipefail -c '
    printf %s carpool-test | HOME="$KEYRING_HOME" XDG_DATA_HOME="$KEYRING_HOME/.local/share" \
        gnome-keyring-daemon --unlock --components=secrets >/dev/null
    CARPOOL_REQUIRE_SECRET_SERVICE=1 cargo test --test secret_service "$@"
' secret-service-test "$@"
