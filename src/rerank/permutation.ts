import type { PermutationIssues } from "./types.ts";

/**
 * Reads a ranking answer such as "[3] > [1] > [2]" for `n` passages numbered 1..n. Robust to what
 * LLMs actually write: identifiers with or without brackets, other separators, prose around them,
 * duplicates (the first mention counts), out-of-range numbers (ignored) and missing identifiers
 * (appended in their input order, after the ranked ones). Returns 0-based indices.
 */
export function parsePermutation(text: string, n: number): { order: number[]; issues: PermutationIssues } {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`parsePermutation: n must be an integer >= 0, got ${n}`);
  // Prefer bracketed ids when there are any: prose like "the 2 most relevant" must not count.
  const bracketed = [...text.matchAll(/\[\s*(\d+)\s*\]/g)].map((m) => m[1]!);
  const tokens = bracketed.length > 0 ? bracketed : [...text.matchAll(/\d+/g)].map((m) => m[0]);
  const seen = new Set<number>();
  const order: number[] = [];
  let duplicates = 0;
  let outOfRange = 0;
  for (const t of tokens) {
    const id = Number(t);
    if (!Number.isSafeInteger(id) || id < 1 || id > n) {
      outOfRange++;
      continue;
    }
    if (seen.has(id - 1)) {
      duplicates++;
      continue;
    }
    seen.add(id - 1);
    order.push(id - 1);
  }
  let missing = 0;
  for (let i = 0; i < n; i++) {
    if (!seen.has(i)) {
      order.push(i);
      missing++;
    }
  }
  return { order, issues: { duplicates, missing, outOfRange, unparsable: n > 0 && seen.size === 0 } };
}
