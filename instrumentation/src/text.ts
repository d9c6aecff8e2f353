// Text cut at a length without splitting a character: the instrumentation's cut of captured
// content and the collector's names in its messages use the one rule.

/** The first `max` UTF-16 units of a text, less the first half of a surrogate pair the cut would split. */
export function wholeHead(text: string, max: number): string {
  if (text.length <= max) return text;
  const last = text.charCodeAt(max - 1);
  return text.slice(0, last >= 0xd800 && last <= 0xdbff ? max - 1 : max);
}
