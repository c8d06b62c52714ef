/** Rank statistics and robust location/scale used by the chain metrics. Pure functions. */

/** Average ranks (1-based), ties share the mean of their positions. */
export function averageRanks(xs: readonly number[]): number[] {
  const idx = xs.map((x, i) => [x, i] as const).sort((a, b) => a[0] - b[0]);
  const ranks = new Array<number>(xs.length);
  let i = 0;
  while (i < idx.length) {
    let j = i;
    while (j + 1 < idx.length && idx[j + 1]![0] === idx[i]![0]) j++;
    const r = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) ranks[idx[k]![1]] = r;
    i = j + 1;
  }
  return ranks;
}

/** Pearson correlation; null when fewer than 2 points or either side is constant. */
export function pearson(xs: readonly number[], ys: readonly number[]): number | null {
  const n = xs.length;
  if (n !== ys.length) throw new Error(`pearson: lengths differ (${n} vs ${ys.length})`);
  if (n < 2) return null;
  let mx = 0;
  let my = 0;
  for (let i = 0; i < n; i++) {
    mx += xs[i]!;
    my += ys[i]!;
  }
  mx /= n;
  my /= n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    const dx = xs[i]! - mx;
    const dy = ys[i]! - my;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  if (sxx === 0 || syy === 0) return null;
  return clamp(sxy / Math.sqrt(sxx * syy));
}

/** Spearman's rho (Pearson on average ranks, so ties are handled). */
export function spearman(xs: readonly number[], ys: readonly number[]): number | null {
  if (xs.length !== ys.length) throw new Error(`spearman: lengths differ (${xs.length} vs ${ys.length})`);
  return pearson(averageRanks(xs), averageRanks(ys));
}

/** Kendall's tau-b (tie-corrected); null when undefined. O(n²), fine for chain lengths. */
export function kendallTauB(xs: readonly number[], ys: readonly number[]): number | null {
  const n = xs.length;
  if (n !== ys.length) throw new Error(`kendall: lengths differ (${n} vs ${ys.length})`);
  if (n < 2) return null;
  let concordant = 0;
  let discordant = 0;
  let tiesX = 0;
  let tiesY = 0;
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const dx = Math.sign(xs[i]! - xs[j]!);
      const dy = Math.sign(ys[i]! - ys[j]!);
      if (dx === 0 && dy === 0) continue;
      if (dx === 0) tiesX++;
      else if (dy === 0) tiesY++;
      else if (dx === dy) concordant++;
      else discordant++;
    }
  }
  const denom = Math.sqrt((concordant + discordant + tiesX) * (concordant + discordant + tiesY));
  if (denom === 0) return null;
  return clamp((concordant - discordant) / denom);
}

function clamp(r: number): number {
  return Math.max(-1, Math.min(1, r));
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * Robust z-scores (Iglewicz & Hoaglin): 0.6745 · (x − median) / MAD. When the MAD is 0 (more than
 * half the values equal), falls back to the mean absolute deviation scaled by 1.2533; when that is
 * 0 too, every score is 0.
 */
export function robustZ(xs: readonly number[]): number[] {
  if (xs.length === 0) return [];
  const med = median(xs);
  const dev = xs.map((x) => Math.abs(x - med));
  const mad = median(dev);
  if (mad > 0) return xs.map((x) => (0.6745 * (x - med)) / mad);
  const meanAd = dev.reduce((a, b) => a + b, 0) / xs.length;
  if (meanAd > 0) return xs.map((x) => (x - med) / (1.2533 * meanAd));
  return xs.map(() => 0);
}

/** Linear-interpolated quantile of already sorted values (q in [0,1]). */
export function quantileSorted(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}
