// Copying a setup to the clipboard. `navigator.clipboard` exists only in secure contexts
// (https, or http on localhost): on a LAN address over plain http it is missing, and then
// the caller selects the text so the reader can press Ctrl+C / ⌘C.

/** Copies `text`; false when this page may not write to the clipboard. */
export async function copyText(text: string): Promise<boolean> {
  const clipboard = typeof navigator === "undefined" ? undefined : navigator.clipboard;
  if (!clipboard?.writeText) return false;
  try {
    await clipboard.writeText(text);
    return true;
  } catch {
    return false;
  }
}

/** Selects the whole text of `element`, for a manual copy. */
export function selectText(element: Element): void {
  const selection = window.getSelection();
  if (!selection) return;
  const range = document.createRange();
  range.selectNodeContents(element);
  selection.removeAllRanges();
  selection.addRange(range);
}

/** "Ctrl+C" or "⌘C", for the reader's keyboard. */
export function copyKeys(): string {
  const platform = typeof navigator === "undefined" ? "" : navigator.platform || navigator.userAgent;
  return /Mac|iPhone|iPad/.test(platform) ? "⌘C" : "Ctrl+C";
}
