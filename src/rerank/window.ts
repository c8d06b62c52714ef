/**
 * Sliding windows of RankGPT-style listwise reranking: windows of `width` passages moved from the
 * back of the ranked list to the front by `step`, so a relevant passage near the bottom can climb
 * by up to width − step places per window and reach the top in one pass. Unlike RankGPT's loop,
 * the last window always starts at 0 (RankGPT stops once start < 0 and never compares the first
 * `start mod step` passages with the climbers).
 */
export interface Window {
  /** Inclusive start index in the current ranking. */
  start: number;
  /** Exclusive end index. */
  end: number;
}

export const DEFAULT_WINDOW = 20;
export const DEFAULT_STEP = 10;

export function slidingWindows(n: number, width = DEFAULT_WINDOW, step = DEFAULT_STEP): Window[] {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`slidingWindows: n must be an integer >= 0, got ${n}`);
  if (!Number.isInteger(width) || width < 2) throw new RangeError(`window width must be an integer >= 2, got ${width}`);
  if (!Number.isInteger(step) || step < 1 || step > width) throw new RangeError(`window step must be an integer from 1 to the width (${width}), got ${step}`);
  if (n < 2) return [];
  const out: Window[] = [];
  let end = n;
  for (;;) {
    const start = Math.max(0, end - width);
    out.push({ start, end });
    if (start === 0) return out;
    end -= step;
  }
}
