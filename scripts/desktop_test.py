#!/usr/bin/python3
"""The tray app, end to end, as a person uses it: run by scripts/desktop-test.sh under Xvfb
and a private D-Bus session (`xvfb-run … dbus-run-session -- python3 scripts/desktop_test.py`).

This process plays the desktop around the app:
- the tray host: a minimal org.kde.StatusNotifierWatcher (after ../shared/tools/sni_watcher.py
  of the project's notes), which reads the app's tray item and its menu (com.canonical.dbusmenu)
  and clicks items by label, as a panel does;
- the notification server (org.freedesktop.Notifications), recording every notification;
- a mock Anthropic upstream on 127.0.0.1 that answers /v1/messages with usage figures;
- the window manager's close button (WM_DELETE_WINDOW, through python3-xlib).

Then it checks, first on a first launch with no config: Start creates the config as
`carpool serve` does and Copy Claude Code setup copies the created user's token, which the
relay takes; then on a prepared config: the app starts stopped with the expected menu; Start on a port another
program holds gives one notification naming the holder; Start makes the relay answer the
Python SDK (through a user token) on its port and the menu shows that request's cost and a
different icon; Copy Claude Code setup puts a working setup on the clipboard; Start at login
writes and removes the XDG autostart entry; a second launch exits and shows the window;
Open dashboard renders the dashboard signed in (screenshot saved); closing the window
ends its process and every WebKit process; Stop makes the port refuse; Quit exits 0 with the usage database
intact, remembers that the relay ran, and leaves no process behind.

With --memory N it also measures the app's memory (PSS and RSS of the app and every process
it started) idle with no window, and after each of N open/close cycles of the window, and
prints a table for bench/README.md.

Needs Debian's python3-dbus, python3-gi, python3-xlib, xclip and ImageMagick's `import`
(/usr/bin/python3). Environment: CARPOOL_DESKTOP (the app's binary), CARPOOL_TEST_PYTHON (a
Python with the anthropic SDK), CARPOOL_SCREENSHOTS (where the screenshot goes).
"""
import argparse
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dbus
import dbus.service
from dbus.mainloop.glib import DBusGMainLoop
from gi.repository import GLib
from Xlib import X, display as xdisplay, protocol

USER_TOKEN = "cpk-desktop-test-0000000000000001"
MODEL = "claude-sonnet-4-5-20250929"
INPUT_TOKENS, OUTPUT_TOKENS = 1200, 300


def log(*parts):
    print("desktop-test:", *parts, flush=True)


class Failed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failed(message)


# --------------------------------------------------------------------------------------
# The desktop's D-Bus side: tray host and notification server.

class Watcher(dbus.service.Object):
    """org.kde.StatusNotifierWatcher: the app registers its tray item here."""

    IFACE = "org.kde.StatusNotifierWatcher"

    def __init__(self, bus):
        self.item = None  # (bus name, object path)
        self.name = dbus.service.BusName(self.IFACE, bus)
        super().__init__(self.name, "/StatusNotifierWatcher")

    @dbus.service.method(IFACE, in_signature="s", out_signature="", sender_keyword="sender")
    def RegisterStatusNotifierItem(self, service, sender=None):
        path = service if service.startswith("/") else "/StatusNotifierItem"
        name = sender if service.startswith("/") else service
        self.item = (name, path)
        self.StatusNotifierItemRegistered(f"{name}{path}")

    @dbus.service.method(IFACE, in_signature="s", out_signature="")
    def RegisterStatusNotifierHost(self, service):
        pass

    @dbus.service.signal(IFACE, signature="s")
    def StatusNotifierItemRegistered(self, s):
        pass

    @dbus.service.method(dbus.PROPERTIES_IFACE, in_signature="ss", out_signature="v")
    def Get(self, iface, prop):
        return self.GetAll(iface)[prop]

    @dbus.service.method(dbus.PROPERTIES_IFACE, in_signature="s", out_signature="a{sv}")
    def GetAll(self, iface):
        items = [f"{n}{p}" for n, p in [self.item] if self.item]
        return {
            "RegisteredStatusNotifierItems": dbus.Array(items, signature="s"),
            "IsStatusNotifierHostRegistered": dbus.Boolean(True),
            "ProtocolVersion": dbus.Int32(0),
        }


class Notifications(dbus.service.Object):
    """org.freedesktop.Notifications: records what the app shows."""

    IFACE = "org.freedesktop.Notifications"

    def __init__(self, bus):
        self.shown = []
        self.name = dbus.service.BusName(self.IFACE, bus)
        super().__init__(self.name, "/org/freedesktop/Notifications")

    @dbus.service.method(IFACE, in_signature="susssasa{sv}i", out_signature="u")
    def Notify(self, app_name, replaces_id, icon, summary, body, actions, hints, timeout):
        self.shown.append((str(summary), str(body)))
        log(f"notification: {summary} — {body}")
        return dbus.UInt32(len(self.shown))

    @dbus.service.method(IFACE, in_signature="", out_signature="as")
    def GetCapabilities(self):
        return dbus.Array(["body"], signature="s")

    @dbus.service.method(IFACE, in_signature="", out_signature="ssss")
    def GetServerInformation(self):
        return ("desktop-test", "carpool", "1", "1.2")

    @dbus.service.method(IFACE, in_signature="u", out_signature="")
    def CloseNotification(self, id):
        pass


def pump(seconds=0.05):
    """Runs the D-Bus main loop for a moment, so the app's calls are answered."""
    context = GLib.MainContext.default()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        while context.pending():
            context.iteration(False)
        time.sleep(0.01)


def wait_for(what, predicate, timeout=30):
    """Pumps the main loop until `predicate()` is truthy; its value, or Failed."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        pump(0.1)
    raise Failed(f"timed out after {timeout} s waiting for {what}")


class Tray:
    def __init__(self, bus, watcher):
        self.bus, self.watcher = bus, watcher

    def _item(self):
        name, path = self.watcher.item
        return self.bus.get_object(name, path)

    def prop(self, name):
        props = dbus.Interface(self._item(), dbus.PROPERTIES_IFACE)
        return props.Get("org.kde.StatusNotifierItem", name)

    def _menu(self):
        name, _ = self.watcher.item
        return dbus.Interface(self.bus.get_object(name, self.prop("Menu")), "com.canonical.dbusmenu")

    def items(self):
        """The menu now: [(id, label, enabled, toggle-state or None)], separators left out."""
        _rev, layout = self._menu().GetLayout(0, -1, dbus.Array([], signature="s"))
        found = []

        def walk(node):
            id_, props, children = node
            label = str(props.get("label", "")).replace("_", "")
            if label:
                toggle = props.get("toggle-state")
                found.append((int(id_), label, bool(props.get("enabled", True)),
                              None if toggle is None else int(toggle)))
            for child in children:
                walk(child)

        walk(layout)
        return found

    def labels(self):
        if not self.watcher.item:
            return []
        try:
            return [label for _, label, _, _ in self.items()]
        except dbus.DBusException:
            return []  # the menu is being replaced, or the app is gone

    def click(self, label):
        """Clicks the item whose label starts with `label` (the menu is read afresh: ids
        change whenever the app rebuilds its menu)."""
        for attempt in range(20):
            try:
                for id_, text, enabled, _ in self.items():
                    if text.startswith(label):
                        check(enabled, f"`{text}` is greyed out")
                        self._menu().Event(dbus.Int32(id_), "clicked",
                                           dbus.Int32(0, variant_level=1), dbus.UInt32(0))
                        log(f"clicked `{text}`")
                        return
            except dbus.DBusException as e:
                # The menu was replaced between reading and clicking: read it again.
                log(f"click on `{label}` missed ({e.get_dbus_name()}); again")
            pump(0.2)
        raise Failed(f"no menu item `{label}` in {self.labels()}")

    def icon_digest(self):
        """A digest of the icon the tray shows (the PNG file the item names)."""
        name = str(self.prop("IconName"))
        theme = str(self.prop("IconThemePath") or "")
        for path in [name, os.path.join(theme, name + ".png"), os.path.join(theme, name)]:
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    return hashlib.sha256(f.read()).hexdigest()
        raise Failed(f"the tray's icon `{name}` (theme path `{theme}`) is not a file")


# --------------------------------------------------------------------------------------
# A mock Anthropic upstream.

class Upstream(BaseHTTPRequestHandler):
    requests = 0

    def log_message(self, *args):
        pass

    def do_POST(self):
        length = int(self.headers.get("content-length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path != "/v1/messages" or self.headers.get("x-api-key") != "sk-ant-api03-mock":
            self.send_error(401 if self.path == "/v1/messages" else 404)
            return
        Upstream.requests += 1
        answer = json.dumps({
            "id": f"msg_{Upstream.requests}", "type": "message", "role": "assistant",
            "model": body.get("model", MODEL),
            "content": [{"type": "text", "text": "Hello from the mock."}],
            "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        }).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_answers(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------------------
# Processes and memory.

def end_app(app, marker):
    """Kills what is left of an app: its process, and every process it started."""
    if app.poll() is None:
        app.kill()
        app.wait()
    for pid in marked_processes(marker):
        try:
            os.kill(pid, 9)
        except OSError:
            pass


def clipboard(env):
    """The clipboard's text, stripped; None while empty."""
    text = subprocess.run(["xclip", "-o", "-selection", "clipboard"],
                          capture_output=True, text=True, env=env).stdout
    return (text or "").strip() or None


def marked_processes(marker):
    """Pids of every process whose environment carries `marker` (the app and all it
    started, even after they were re-parented)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            pass
    return found


def memory_kib(pids):
    """(PSS, RSS) in KiB summed over `pids` (from /proc/PID/smaps_rollup)."""
    pss = rss = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    key, _, rest = line.partition(":")
                    if key == "Pss":
                        pss += int(rest.split()[0])
                    elif key == "Rss":
                        rss += int(rest.split()[0])
        except OSError:
            pass
    return pss, rss


def breakdown(pids):
    """`name PSS` per process, for the memory table's notes."""
    parts = []
    for pid, name in zip(pids, process_names(pids)):
        pss, _ = memory_kib([pid])
        parts.append(f"{name} {pss / 1024:.1f}")
    return ", ".join(parts)


def process_names(pids):
    names = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/comm") as f:
                names.append(f.read().strip())
        except OSError:
            pass
    return names


# --------------------------------------------------------------------------------------
# The window.

def find_window(title):
    d = xdisplay.Display()
    try:
        stack = [d.screen().root]
        while stack:
            window = stack.pop()
            try:
                if window.get_wm_name() == title:
                    attrs = window.get_attributes()
                    if attrs.map_state == X.IsViewable:
                        return window.id
                stack.extend(window.query_tree().children)
            except Exception:
                continue
        return None
    finally:
        d.close()


def named_windows():
    """(id, name, map state) of every named X window, for a failure's report."""
    d = xdisplay.Display()
    found = []
    try:
        stack = [d.screen().root]
        while stack:
            window = stack.pop()
            try:
                name = window.get_wm_name()
                if name:
                    found.append((hex(window.id), name, window.get_attributes().map_state))
                stack.extend(window.query_tree().children)
            except Exception:
                continue
    finally:
        d.close()
    return found


def close_window(window_id):
    """What a window manager does on the close button: WM_DELETE_WINDOW."""
    d = xdisplay.Display()
    try:
        window = d.create_resource_object("window", window_id)
        protocols = d.intern_atom("WM_PROTOCOLS")
        delete = d.intern_atom("WM_DELETE_WINDOW")
        event = protocol.event.ClientMessage(window=window, client_type=protocols,
                                             data=(32, [delete, X.CurrentTime, 0, 0, 0]))
        window.send_event(event, event_mask=X.NoEventMask)
        d.flush()
    finally:
        d.close()


def signed_in_windows(app_log):
    """How many times a window signed in, by the app's log."""
    with open(app_log) as f:
        return f.read().count("the desktop app's window signed in")


def wait_for_window(app_log, before):
    """The dashboard window, once it has signed in and its page had a moment to load,
    as a person sees it before closing it. (A close request within the first half second
    of the window's life was lost in about one run in four, on this virtual display
    without a window manager: the window never hears of it. Never seen later in a
    window's life.)"""
    window = wait_for("the dashboard window", lambda: find_window("Carpool"))
    wait_for("the window's sign-in", lambda: signed_in_windows(app_log) > before)
    time.sleep(2)
    return window


def screenshot(path):
    subprocess.run(["import", "-window", "root", path], check=True)
    colours = int(subprocess.run(["identify", "-format", "%k", path], check=True,
                                 capture_output=True, text=True).stdout.strip() or 0)
    return colours


# --------------------------------------------------------------------------------------

def app_env(home, marker):
    """The app's environment: its own HOME and XDG folders, and `marker`, by which
    every process it starts is found."""
    env = dict(os.environ, HOME=home, XDG_CONFIG_HOME=os.path.join(home, ".config"),
               XDG_DATA_HOME=os.path.join(home, ".local", "share"),
               XDG_CACHE_HOME=os.path.join(home, ".cache"))
    env[marker.split("=")[0]] = marker.split("=")[1]
    # The window process's own lines (close requests, its end) in app.log too.
    env["CARPOOL_LOG"] = "info,carpool_desktop=debug"
    # No GPU under Xvfb: WebKit's compositing would only warn.
    env.setdefault("WEBKIT_DISABLE_COMPOSITING_MODE", "1")
    return env


def first_run(app_bin, tray, shots):
    """A person's first launch, with no config: Start creates it as `carpool serve`
    does (one user, on the default port), and Copy Claude Code setup copies that user's
    token, which the relay takes. Then Quit."""
    home = tempfile.mkdtemp(prefix="carpool-first-run-")
    marker = f"CARPOOL_DESKTOP_TEST={uuid.uuid4()}"
    env = app_env(home, marker)
    config = os.path.join(home, ".config", "carpool", "config.json")
    with open(os.path.join(shots, "first-run.log"), "w") as app_log:
        app = subprocess.Popen([app_bin], env=env, stdout=app_log, stderr=subprocess.STDOUT)
    try:
        wait_for("the first run's tray item", lambda: tray.labels()[:2] == ["Carpool is stopped", "Start"])
        check(not os.path.exists(config), "no config before Start")
        tray.click("Start")
        address = "http://127.0.0.1:7676"
        wait_for("the first run's relay", lambda: tray.labels()[:1] == [f"Carpool is running on {address}"])
        check(os.path.isfile(config), "Start created the config")
        tray.click("Copy Claude Code setup")
        copied = wait_for("the setup on the clipboard", lambda: clipboard(env))
        lines = copied.splitlines()
        check(lines[0] == f"export ANTHROPIC_BASE_URL={address}", copied)
        token = lines[1].removeprefix("export ANTHROPIC_AUTH_TOKEN=")
        check(token.startswith("cpk-"), "a token in the setup")
        with open(config) as f:
            text = f.read()
        check('"desktop"' not in text, "the created user's token was kept: no user added for the copy")
        # The relay takes the token: refused for want of a Claude login (this HOME has
        # none), not for the token.
        status = relay_status(address, token)
        check(status == 503, f"the copied token is taken: {status}, not 503 (no login)")
        wrong = relay_status(address, "cpk-wrong")
        check(wrong in (401, 403), f"a wrong token is refused: {wrong}")
        log(f"first run: config created, copied token accepted (answer {status} without a login)")
        tray.click("Quit Carpool")
        check(app.wait(timeout=30) == 0, "the first run quits with 0")
        wait_for("the first run's tray item gone", lambda: tray.labels() == [] or None, timeout=10)
    finally:
        end_app(app, marker)
        shutil.rmtree(home, ignore_errors=True)
    watcher_reset(tray)


def watcher_reset(tray):
    """Forgets the item of an app that quit, so the next one's is waited for."""
    tray.watcher.item = None


def relay_status(address, token):
    """The HTTP status of a small /v1/messages request with `token`."""
    import urllib.error
    import urllib.request
    request = urllib.request.Request(
        f"{address}/v1/messages", method="POST",
        data=json.dumps({"model": MODEL, "max_tokens": 8,
                         "messages": [{"role": "user", "content": "hi"}]}).encode(),
        headers={"authorization": f"Bearer {token}", "content-type": "application/json",
                 "anthropic-version": "2023-06-01"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status
    except urllib.error.HTTPError as e:
        return e.code


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--memory", type=int, default=0,
                        help="also measure memory over this many open/close cycles of the window")
    args = parser.parse_args()

    app_bin = os.environ["CARPOOL_DESKTOP"]
    sdk_python = os.environ.get("CARPOOL_TEST_PYTHON", "python3")
    shots = os.environ.get("CARPOOL_SCREENSHOTS", "target/desktop-test")
    os.makedirs(shots, exist_ok=True)

    DBusGMainLoop(set_as_default=True)
    bus = dbus.SessionBus()
    watcher = Watcher(bus)
    notifications = Notifications(bus)
    tray = Tray(bus, watcher)

    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    upstream_url = f"http://127.0.0.1:{upstream.server_address[1]}"

    home = tempfile.mkdtemp(prefix="carpool-desktop-")
    config_dir = os.path.join(home, ".config", "carpool")
    data_dir = os.path.join(home, ".local", "share", "carpool")
    os.makedirs(config_dir)
    port = free_port()
    database = os.path.join(data_dir, "usage.db")
    with open(os.path.join(config_dir, "config.json"), "w") as f:
        json.dump({
            "listen": "127.0.0.1",
            "listen_port": port,
            "credentials": [{"tag": "key", "type": "api_key", "api_key": "sk-ant-api03-mock", "base_url": upstream_url}],
            "users": [{"name": "friend", "token": USER_TOKEN, "credential": "key"}],
            "data_dir": data_dir,
            "database": database,
            "secret_store": "file",
        }, f, indent=2)
    marker = f"CARPOOL_DESKTOP_TEST={uuid.uuid4()}"
    env = app_env(home, marker)
    try:
        first_run(app_bin, tray, shots)
    except Failed as e:
        log(f"FAILED on the first run: {e}")
        return 1

    app_log_path = os.path.join(shots, "app.log")
    app_log = open(app_log_path, "w")
    app = subprocess.Popen([app_bin], env=env, stdout=app_log, stderr=subprocess.STDOUT)
    log(f"app started (pid {app.pid}), config in {config_dir}, relay port {port}")
    blocker = None
    try:
        # The tray item appears, stopped.
        wait_for("the tray item", lambda: watcher.item)
        wait_for("the stopped menu", lambda: tray.labels() == [
            "Carpool is stopped", "Start", "Open dashboard", "Copy Claude Code setup",
            "Start at login", "Quit Carpool"])
        items = {label: (enabled, toggle) for _, label, enabled, toggle in tray.items()}
        check(not items["Open dashboard"][0], "Open dashboard is greyed out while stopped")
        check(items["Start at login"][1] == 0, "Start at login is an unchecked check item")
        stopped_icon = tray.icon_digest()
        log("menu:", tray.labels())

        # Start while another program holds the port: one notification naming it.
        blocker = socket.socket()
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        tray.click("Start")
        busy = wait_for("the port-busy notification",
                        lambda: [n for n in notifications.shown if n[0] == "Carpool cannot start"])
        check(len(busy) == 1, f"one notification, not {busy}")
        check(f"cannot listen on 127.0.0.1:{port}" in busy[0][1], busy[0][1])
        check(f"pid {os.getpid()}" in busy[0][1], f"the holder is named: {busy[0][1]}")
        wait_for("the stopped menu again", lambda: tray.labels()[:2] == ["Carpool is stopped", "Start"])
        blocker.close()
        blocker = None

        # Start: the relay answers the Python SDK on its port.
        tray.click("Start")
        address = f"http://127.0.0.1:{port}"
        wait_for("the running menu", lambda: tray.labels()[:1] == [f"Carpool is running on {address}"])
        check(port_answers(port), "the port answers")
        running_icon = wait_for("the running icon", lambda: (d := tray.icon_digest()) != stopped_icon and d)
        check("Stop" in tray.labels(), tray.labels())
        sdk = subprocess.run([sdk_python, "-c", f"""
import anthropic
client = anthropic.Anthropic(base_url={address!r}, api_key={USER_TOKEN!r}, max_retries=0)
message = client.messages.create(model={MODEL!r}, max_tokens=64,
    messages=[{{"role": "user", "content": "hi"}}])
print(message.content[0].text, message.usage.input_tokens, message.usage.output_tokens)
"""], capture_output=True, text=True, timeout=60)
        check(sdk.returncode == 0, f"the SDK's request failed: {sdk.stderr[-2000:]}")
        check(sdk.stdout.split() == ["Hello", "from", "the", "mock.", str(INPUT_TOKENS), str(OUTPUT_TOKENS)],
              sdk.stdout)
        # Sonnet 4.5: $3 / MTok in, $15 / MTok out → 1200 in + 300 out = $0.0081.
        wait_for("the request's cost in the menu", lambda: "Today: $0.008" in tray.labels())
        check(any(l.startswith("key — ") for l in tray.labels()), tray.labels())
        log("menu after a request:", tray.labels())

        if args.memory:
            measure_memory(args.memory, tray, marker, app, app_log_path)

        # Copy Claude Code setup: this machine's address and a token the relay takes.
        tray.click("Copy Claude Code setup")
        copied = wait_for("the setup on the clipboard", lambda: clipboard(env))
        lines = copied.splitlines()
        check(lines[0] == f"export ANTHROPIC_BASE_URL={address}", copied)
        check(lines[1].startswith("export ANTHROPIC_AUTH_TOKEN=cpk-"), "a token in the setup")
        wait_for("the copy notification",
                 lambda: any(n[0] == "Claude Code setup copied" for n in notifications.shown))

        # Start at login: the XDG autostart entry comes and goes.
        autostart = os.path.join(home, ".config", "autostart", "Carpool.desktop")
        tray.click("Start at login")
        wait_for("the autostart entry", lambda: os.path.isfile(autostart))
        wait_for("Start at login checked", lambda: any(
            label == "Start at login" and toggle == 1 for _, label, _, toggle in tray.items()))
        with open(autostart) as f:
            entry = f.read()
        check(f"Exec={app_bin}" in entry, f"the entry starts this app: {entry}")
        tray.click("Start at login")
        wait_for("the autostart entry removed", lambda: not os.path.exists(autostart))

        # A second launch hands over to the first (which shows its window) and exits.
        before = signed_in_windows(app_log_path)
        second = subprocess.run([app_bin], env=env, capture_output=True, timeout=30)
        check(second.returncode == 0, f"the second launch exits 0, not {second.returncode}")
        check(app.poll() is None, "the first one still runs")
        window = wait_for_window(app_log_path, before)
        close_window(window)
        wait_for("the window closed", lambda: not find_window("Carpool"))

        # Open dashboard: the window shows the dashboard, signed in by the app.
        before = signed_in_windows(app_log_path)
        tray.click("Open dashboard")
        window = wait_for_window(app_log_path, before)
        # The page renders: give it time to fetch and draw, then look.
        time.sleep(4)
        shot = os.path.join(shots, "dashboard-window.png")
        colours = screenshot(shot)
        check(colours > 64, f"the window shows a page ({colours} colours in {shot})")
        log(f"screenshot: {shot} ({colours} colours)")
        web_before = [n for n in process_names(marked_processes(marker)) if n.startswith("WebKitWeb")]
        check(web_before, "a web process renders the window")
        close_window(window)
        wait_for("the window closed", lambda: not find_window("Carpool"))
        # The window is a process of its own (src-tauri/src/window.rs): it ends, and every
        # WebKit process with it; the tray process is the one left.
        wait_for("the window's processes gone", lambda: process_names(marked_processes(marker)) == [
            "carpool-desktop"], timeout=20)
        check(app.poll() is None, "closing the window leaves the tray app running")

        # Stop: the port refuses.
        tray.click("Stop")
        wait_for("the stopped menu", lambda: tray.labels()[:2] == ["Carpool is stopped", "Start"])
        check(not port_answers(port), "the port refuses once stopped")
        check(tray.icon_digest() == stopped_icon, "the stopped icon is back")
        with open(os.path.join(config_dir, "desktop.json")) as f:
            check(json.load(f)["relay_running"] is False, "Stop is remembered")

        # Start again, then Quit: graceful, the usage on disk, nothing left behind.
        tray.click("Start")
        wait_for("the running menu", lambda: tray.labels()[:1] == [f"Carpool is running on {address}"])
        check(tray.icon_digest() == running_icon, "the running icon again")
        tray.click("Quit Carpool")
        code = app.wait(timeout=30)
        check(code == 0, f"Quit exits 0, not {code}")
        with open(os.path.join(config_dir, "desktop.json")) as f:
            check(json.load(f)["relay_running"] is True, "that the relay ran is remembered")
        db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        check(db.execute("PRAGMA integrity_check").fetchone()[0] == "ok", "the database is intact")
        rows = db.execute("SELECT user, input_tokens, output_tokens FROM requests").fetchall()
        check(rows == [("friend", INPUT_TOKENS, OUTPUT_TOKENS)], f"the request is recorded: {rows}")
        db.close()
        left = wait_for("no process left", lambda: not marked_processes(marker) or None, timeout=10) \
            if marked_processes(marker) else True
        check(left, "no process left")
        check(len(notifications.shown) < 10, f"no storm of notifications: {notifications.shown}")
        log("passed")
        return 0
    except Failed as e:
        log(f"FAILED: {e}")
        try:
            screenshot(os.path.join(shots, "failure.png"))
            log("menu at the failure:", tray.labels())
            log("processes at the failure:", breakdown(marked_processes(marker)))
            log("windows at the failure:", named_windows())
        except Exception as more:
            log(f"(and while describing it: {more!r})")
        return 1
    finally:
        if blocker:
            blocker.close()
        end_app(app, marker)
        upstream.shutdown()
        shutil.rmtree(home, ignore_errors=True)


def measure_memory(cycles, tray, marker, app, app_log_path):
    """The app's memory idle without a window, and after each open/close cycle."""
    def settle():
        time.sleep(8)
        pump(0.1)
        pids = marked_processes(marker)
        log("processes:", breakdown(pids))
        return memory_kib(pids)

    rows = [("idle, relay running, window never opened", *settle())]
    for n in range(1, cycles + 1):
        before = signed_in_windows(app_log_path)
        tray.click("Open dashboard")
        window = wait_for_window(app_log_path, before)
        time.sleep(4)
        if n == 1:
            pids = marked_processes(marker)
            log("processes:", breakdown(pids))
            rows.append(("window open", *memory_kib(pids)))
        close_window(window)
        wait_for("the window closed", lambda: not find_window("Carpool"))
        rows.append((f"idle after {n} open/close", *settle()))
    check(app.poll() is None, "the app still runs")
    print("\n| state | PSS (MiB) | RSS (MiB) |\n|---|---:|---:|")
    for label, pss, rss in rows:
        print(f"| {label} | {pss / 1024:.1f} | {rss / 1024:.1f} |")
    print(flush=True)


if __name__ == "__main__":
    sys.exit(main())
