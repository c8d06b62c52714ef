/** Small text measures shared by the generator's drift rules and the validation gate. */

/** Lower-case words (letters and digits) of a sentence. */
export function words(s: string): string[] {
  return s.toLowerCase().normalize("NFKC").match(/[\p{L}\p{N}]+/gu) ?? [];
}

/**
 * Does `cur` repeat `prev` and add several words at its start or end? Most of prev's words
 * (share `keep`) must come back as the head or the tail of cur, and cur must be at least
 * `minWords` words (and 30 %) longer. A rewrite that inserts a phrase in the middle ("napping on
 * the sofa" → "playing with a ball of yarn on the sofa") is a change of meaning, not creep.
 */
export function isAppend(prev: string, cur: string, keep = 0.85, minWords = 3): boolean {
  const a = words(prev);
  const b = words(cur);
  if (a.length === 0 || b.length - a.length < Math.max(minWords, 0.3 * a.length)) return false;
  let head = 0;
  while (head < a.length && a[head] === b[head]) head++;
  let tail = 0;
  while (tail < a.length && a[a.length - 1 - tail] === b[b.length - 1 - tail]) tail++;
  return Math.max(head, tail) >= keep * a.length;
}

/** Jaccard overlap of two sentences' word sets (0 … 1). */
export function wordOverlap(a: string, b: string): number {
  const x = new Set(words(a));
  const y = new Set(words(b));
  if (x.size === 0 && y.size === 0) return 1;
  let inter = 0;
  for (const w of x) if (y.has(w)) inter++;
  return inter / (x.size + y.size - inter);
}
