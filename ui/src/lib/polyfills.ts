// Intl.DurationFormat is in Chromium 129+, Safari 16.4+ and Firefox 136+, but not in
// Node 20 (the tests) or older WebKitGTK (the Linux desktop window): load FormatJS's
// polyfill only where it is missing, so current browsers never download it.
export async function loadPolyfills(): Promise<void> {
  if (!("DurationFormat" in Intl)) await import("@formatjs/intl-durationformat/polyfill.js");
}
