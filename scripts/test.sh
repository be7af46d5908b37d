#!/usr/bin/env bash
# The project's one test command: `bash scripts/test.sh` from any directory.
#
# Needs cargo, Python >= 3.10 and Node/npm. Installs the test-only clients inside the repo
# (nothing global), then runs rustfmt, clippy and every test:
#   .test-deps/venv/         Python venv with tests/clients/requirements.txt (the anthropic and
#                            openai SDKs; or .test-deps/python/ + PYTHONPATH where venv is
#                            unavailable)
#   tests/clients/node_modules/   npm ci of tests/clients/package-lock.json (the Claude Code
#                            and Codex CLIs)
#   ui/node_modules/         npm ci of ui/package-lock.json (the dashboard's toolchain; build.rs
#                            reads the same stamp, so cargo does not install it again)
# Installs are skipped while a stamp shows they match the pinned files. Then the dashboard
# (ui/) is type-checked, linted and unit-tested, and cargo builds it into the binary. Last
# come the dashboard in Chromium (ui/e2e) and the tray app under Xvfb (desktop-test.sh).
#
# Arguments are passed to `cargo test`, e.g. `bash scripts/test.sh --test real_clients`.
# CARPOOL_PYTHON picks the Python to build the venv from (default: python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DEPS="$ROOT/.test-deps"
CLIENTS="$ROOT/tests/clients"

STARTED=$SECONDS
SECTION_NAME=""
SECTION_START=$SECONDS
TIMINGS=""

section() {
    end_section
    SECTION_NAME="$1"
    SECTION_START=$SECONDS
    printf '\n==> %s\n' "$1"
}
end_section() {
    if [ -n "$SECTION_NAME" ]; then
        TIMINGS="${TIMINGS}$(printf '  %-28s %4ss' "$SECTION_NAME" $((SECONDS - SECTION_START)))"$'\n'
    fi
    SECTION_NAME=""
}
# On failure, say where and how long each part took. On success cargo test's own
# "test result:" lines stay the last lines printed.
on_exit() {
    local status=$?
    end_section
    if [ "$status" != 0 ]; then
        printf '\n==> FAILED (exit %s) after %ss\n%s' "$status" $((SECONDS - STARTED)) "$TIMINGS" >&2
    fi
}
trap on_exit EXIT
die() {
    printf 'scripts/test.sh: %s\n' "$*" >&2
    exit 1
}

# ---------------------------------------------------------------------------------------
section "tools"
command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs)"
PYTHON="${CARPOOL_PYTHON:-python3}"
command -v "$PYTHON" >/dev/null || die "$PYTHON not found: install Python 3.10 or newer"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
    die "$("$PYTHON" --version 2>&1) is too old: the anthropic SDK needs Python >= 3.10 (set CARPOOL_PYTHON to a newer one)"
command -v node >/dev/null || die "node not found: install Node.js and npm"
command -v npm >/dev/null || die "npm not found: install Node.js and npm"
node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' ||
    die "node $(node --version) is too old: the dashboard's toolchain (Vite) needs Node.js >= 20.19"
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    command -v rustup >/dev/null || die "cargo fmt / cargo clippy missing and no rustup to add them"
    rustup component add rustfmt clippy
fi
echo "$(cargo --version); $("$PYTHON" --version 2>&1); node $(node --version); npm $(npm --version 2>/dev/null)"

# ---------------------------------------------------------------------------------------
section "python test clients"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
py_stamp() {
    printf 'python: %s\nmode: %s\n' "$("$PYTHON" -c 'import sys; print(sys.executable, sys.version)')" "$1"
    cat "$CLIENTS/requirements.txt"
}
STAMP_PY="$DEPS/python.stamp"
# Cheaper than importing the SDKs (about a second).
HAS_SDK='from importlib.metadata import version; version("anthropic"); version("openai")'
VENV_PY="$DEPS/venv/bin/python"
if [ -f "$STAMP_PY" ] && [ -x "$VENV_PY" ] && py_stamp venv | cmp -s - "$STAMP_PY" &&
    "$VENV_PY" -c "$HAS_SDK" 2>/dev/null; then
    echo "up to date: .test-deps/venv"
    CARPOOL_TEST_PYTHON="$VENV_PY"
elif [ -f "$STAMP_PY" ] && [ -d "$DEPS/python" ] && py_stamp target | cmp -s - "$STAMP_PY" &&
    PYTHONPATH="$DEPS/python" "$PYTHON" -c "$HAS_SDK" 2>/dev/null; then
    echo "up to date: .test-deps/python"
    CARPOOL_TEST_PYTHON="$(command -v "$PYTHON")"
    export PYTHONPATH="$DEPS/python${PYTHONPATH:+:$PYTHONPATH}"
else
    rm -rf "$DEPS/venv" "$DEPS/python" "$STAMP_PY"
    mkdir -p "$DEPS"
    if "$PYTHON" -m venv "$DEPS/venv" >"$DEPS/venv.log" 2>&1; then
        "$VENV_PY" -m pip install -q -r "$CLIENTS/requirements.txt"
        py_stamp venv >"$STAMP_PY"
        echo "installed into .test-deps/venv"
        CARPOOL_TEST_PYTHON="$VENV_PY"
    else
        echo "python3 -m venv is unavailable ($(tail -n 1 "$DEPS/venv.log")); using pip --target"
        rm -rf "$DEPS/venv"
        "$PYTHON" -m pip install -q --target "$DEPS/python" -r "$CLIENTS/requirements.txt" ||
            die "cannot install the Python test clients: install python3-venv (Debian/Ubuntu) or pip"
        py_stamp target >"$STAMP_PY"
        echo "installed into .test-deps/python"
        CARPOOL_TEST_PYTHON="$(command -v "$PYTHON")"
        export PYTHONPATH="$DEPS/python${PYTHONPATH:+:$PYTHONPATH}"
    fi
fi
"$CARPOOL_TEST_PYTHON" -c "$HAS_SDK; print('anthropic', version('anthropic'), '/ openai', version('openai'))"

# ---------------------------------------------------------------------------------------
section "claude code and codex cli"
CLAUDE="$CLIENTS/node_modules/.bin/claude"
CLAUDE_PKG="$CLIENTS/node_modules/@anthropic-ai/claude-code"
CLAUDE_WANT="$(cd "$CLIENTS" && node -p "require('./package.json').dependencies['@anthropic-ai/claude-code']")"
# Codex's npm package runs a native binary from a per-platform optional dependency
# (@openai/codex-linux-x64, …): no install script, but npm must not omit optional ones.
CODEX="$CLIENTS/node_modules/.bin/codex"
CODEX_WANT="$(cd "$CLIENTS" && node -p "require('./package.json').dependencies['@openai/codex']")"
STAMP_NPM="$CLIENTS/node_modules/.carpool.stamp"
npm_stamp() {
    printf 'node: %s %s %s\n' "$(node --version)" "$(uname -s)" "$(uname -m)"
    cat "$CLIENTS/package-lock.json"
}
claude_ok() {
    local version
    version="$("$CLAUDE" --version 2>/dev/null)" && [[ "$version" == "$CLAUDE_WANT "* ]]
}
codex_ok() {
    local version
    version="$("$CODEX" --version 2>/dev/null)" && [ "$version" = "codex-cli $CODEX_WANT" ]
}
if [ -f "$STAMP_NPM" ] && npm_stamp | cmp -s - "$STAMP_NPM" && claude_ok && codex_ok; then
    echo "up to date: tests/clients/node_modules"
else
    (cd "$CLIENTS" && npm ci --no-audit --no-fund --loglevel=error)
    if ! claude_ok; then
        # npm skipped the package's postinstall (ignore-scripts, or an allow-list of
        # install scripts), which puts the native binary in place: run it ourselves.
        echo "npm did not run @anthropic-ai/claude-code's postinstall; running it"
        (cd "$CLAUDE_PKG" && node install.cjs)
    fi
    claude_ok || die "tests/clients/node_modules/.bin/claude does not run as Claude Code $CLAUDE_WANT"
    codex_ok || die "tests/clients/node_modules/.bin/codex does not run as Codex CLI $CODEX_WANT (npm must install optional dependencies: its binary is one)"
    npm_stamp >"$STAMP_NPM"
    echo "installed into tests/clients/node_modules"
fi
"$CLAUDE" --version
"$CODEX" --version
CARPOOL_TEST_CLAUDE="$CLAUDE"
CARPOOL_TEST_CODEX="$CODEX"

export CARPOOL_TEST_PYTHON CARPOOL_TEST_CLAUDE CARPOOL_TEST_CODEX
export CARPOOL_REQUIRE_REAL_CLIENTS=1

# ---------------------------------------------------------------------------------------
section "ui: npm ci"
UI="$ROOT/ui"
# The same stamp as build.rs's: Node's version and platform, then the lockfile.
STAMP_UI="$UI/node_modules/.carpool.stamp"
ui_stamp() {
    printf 'node: %s %s %s\n' "$(node --version)" "$(uname -s)" "$(uname -m)"
    cat "$UI/package-lock.json"
}
if [ -f "$STAMP_UI" ] && ui_stamp | cmp -s - "$STAMP_UI"; then
    echo "up to date: ui/node_modules"
else
    (cd "$UI" && npm ci --no-audit --no-fund --loglevel=error)
    ui_stamp >"$STAMP_UI"
    echo "installed into ui/node_modules"
fi

section "ui: npm run check"
(cd "$UI" && npm run --silent check)

section "ui: npm run lint"
(cd "$UI" && npm run --silent lint)
echo "lint clean"

section "ui: npm test"
(cd "$UI" && npm test --silent)

# ---------------------------------------------------------------------------------------
section "cargo fmt --check"
cargo fmt --all -- --check
echo "formatted"

section "cargo clippy"
cargo clippy --all-targets -- -D warnings

section "cargo test"
printf '(so far, %ss:)\n%s' $((SECONDS - STARTED)) "$TIMINGS"
# The keyring round trip (src/secrets.rs) needs a session keyring of the kernel's: with
# keyctl (Debian: keyutils) the tests run inside a new one and the round trip must pass;
# without it, that test says SKIPPED.
if command -v keyctl >/dev/null && keyctl session - true >/dev/null 2>&1; then
    echo "in a new kernel session keyring (keyctl session -)"
    CARPOOL_REQUIRE_KEYRING=1 keyctl session - cargo test "$@"
else
    echo "keyctl unavailable (Debian: apt install keyutils): the kernel keyring round trip is skipped"
    cargo test "$@"
fi

section "Secret Service round trip"
# The OS keyring Carpool uses on Linux, against a real gnome-keyring on a private D-Bus
# session bus (scripts/secret-service-test.sh). Not on macOS, and skipped where the
# daemon is missing unless CARPOOL_REQUIRE_DESKTOP=1 (.ci/run sets it).
if command -v gnome-keyring-daemon >/dev/null && command -v dbus-run-session >/dev/null; then
    scripts/secret-service-test.sh
elif [ "${CARPOOL_REQUIRE_DESKTOP:-}" = 1 ]; then
    die "gnome-keyring-daemon or dbus-run-session missing (Debian: apt install gnome-keyring dbus-daemon)"
else
    echo "gnome-keyring or dbus-run-session missing (Debian: apt install gnome-keyring dbus-daemon): the Secret Service round trip is skipped"
fi

# ---------------------------------------------------------------------------------------
section "e2e (Playwright, Chromium)"
# The dashboard in real Chromium against this checkout's carpool (which embeds the UI) on
# a mock upstream, with the Python SDK above as the client: ui/e2e/, screenshots of every
# page into ui/e2e/screenshots/. Playwright's "N passed" is the last line on success.
CHROMIUM="${CARPOOL_CHROMIUM:-/usr/bin/chromium}"
[ -x "$CHROMIUM" ] || die "no Chromium at $CHROMIUM for the e2e tests: install it (Debian/Ubuntu: apt install chromium; .ci/run does) or, on macOS, set CARPOOL_CHROMIUM to a Chrome/Chromium binary, e.g. \"/Applications/Google Chrome.app/Contents/MacOS/Google Chrome\""
# The binary as cargo test builds it for the integration tests: a no-op after a whole
# `cargo test`. (`cargo build --bin carpool` would compile ~40 s more: without the
# dev-dependencies, some crates' features differ.)
cargo test --no-run --test dashboard
(cd "$UI" && CARPOOL_BIN="$ROOT/target/debug/carpool" CARPOOL_CHROMIUM="$CHROMIUM" npm run --silent e2e)

# ---------------------------------------------------------------------------------------
section "desktop app (src-tauri, Xvfb)"
# The tray app: clippy, then scripts/desktop-test.sh builds it and runs it under Xvfb and a
# private D-Bus session (tray, notifications, Start/Stop, the window, Quit). Built after
# the engine's tests, once: building the two alternately recompiles shared crates.
# Linux only; skipped where the Tauri libraries or Xvfb are missing, unless
# CARPOOL_REQUIRE_DESKTOP=1 (.ci/run sets it).
if [ "$(uname -s)" = Linux ] && pkg-config --exists webkit2gtk-4.1 ayatana-appindicator3-0.1 2>/dev/null &&
    command -v xvfb-run >/dev/null; then
    cargo clippy -p carpool-desktop --all-targets -- -D warnings
    CARPOOL_TEST_PYTHON="$CARPOOL_TEST_PYTHON" scripts/desktop-test.sh
elif [ "${CARPOOL_REQUIRE_DESKTOP:-}" = 1 ]; then
    die "the desktop app's build or test packages are missing (see .ci/run's apt line)"
else
    echo "the Tauri libraries or Xvfb are missing (Debian: see .ci/run's apt line; not on macOS): the desktop app's test is skipped"
fi
