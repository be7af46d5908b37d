#!/bin/sh
# Makes every PNG, icon.ico and icon.icns in icons/ from the SVG sources beside it.
# Needs rsvg-convert (librsvg), icotool (icoutils) and png2icns (libicns):
#   Debian/Ubuntu: apt-get install librsvg2-bin icoutils icnsutils
#   macOS (Homebrew): brew install librsvg icoutils libicns
set -eu
cd "$(dirname "$0")"

for tool in rsvg-convert icotool png2icns; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "icons/make.sh: $tool is missing (see the top of this script)" >&2
        exit 1
    fi
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# png SVG SIZE OUT: an RGBA PNG, SIZE pixels square.
png() {
    rsvg-convert --format png --width "$2" --height "$2" --output "$3" "$1"
}

# The app icon, at the sizes and names Tauri's bundler looks for.
png carpool.svg 32 32x32.png
png carpool.svg 128 128x128.png
png carpool.svg 256 128x128@2x.png
png carpool.svg 512 icon.png

# Below 32 pixels the app icon is carpool-small.svg: the car alone, larger.
# app SIZE OUT: the app icon at SIZE pixels.
app() {
    if [ "$1" -lt 32 ]; then png carpool-small.svg "$1" "$2"; else png carpool.svg "$1" "$2"; fi
}

# Windows: one .ico with the sizes Explorer and the taskbar pick from; 256 stored as PNG.
for size in 16 24 32 48 64 256; do
    app "$size" "$tmp/app-$size.png"
done
icotool --create --output icon.ico \
    "$tmp/app-16.png" "$tmp/app-24.png" "$tmp/app-32.png" "$tmp/app-48.png" \
    "$tmp/app-64.png" --raw="$tmp/app-256.png"

# macOS: one .icns with 16 to 512 (png2icns picks each size's slot by its dimensions).
for size in 16 32 48 128 256 512; do
    app "$size" "$tmp/mac-$size.png"
done
png2icns icon.icns "$tmp/mac-16.png" "$tmp/mac-32.png" "$tmp/mac-48.png" \
    "$tmp/mac-128.png" "$tmp/mac-256.png" "$tmp/mac-512.png" >/dev/null

# The tray: 32 px, and 64 px for 2x displays.
for state in stopped running attention; do
    png "tray-$state.svg" 32 "tray-$state.png"
    png "tray-$state.svg" 64 "tray-$state@2x.png"
done
