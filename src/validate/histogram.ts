/**
 * Fixed-bin histogram over [lo, hi]: constant memory however many values stream in, with
 * approximate quantiles (error ≤ one bin width). Values outside the range land in the edge bins.
 */
export class StreamingHistogram {
  readonly counts: number[];
  count = 0;
  sum = 0;
  min = Infinity;
  max = -Infinity;

  constructor(
    readonly lo: number,
    readonly hi: number,
    readonly bins: number,
  ) {
    if (!(hi > lo) || !Number.isInteger(bins) || bins < 1) throw new Error(`StreamingHistogram: bad range [${lo}, ${hi}] / ${bins} bins`);
    this.counts = new Array<number>(bins).fill(0);
  }

  get width(): number {
    return (this.hi - this.lo) / this.bins;
  }

  add(x: number): void {
    if (!Number.isFinite(x)) return;
    const b = Math.min(this.bins - 1, Math.max(0, Math.floor((x - this.lo) / this.width)));
    this.counts[b]!++;
    this.count++;
    this.sum += x;
    if (x < this.min) this.min = x;
    if (x > this.max) this.max = x;
  }

  get mean(): number | null {
    return this.count ? this.sum / this.count : null;
  }

  /** Approximate q-quantile, interpolated inside the bin; clamped to the observed min/max. */
  quantile(q: number): number | null {
    if (this.count === 0) return null;
    const target = q * this.count;
    let acc = 0;
    for (let b = 0; b < this.bins; b++) {
      const c = this.counts[b]!;
      if (c > 0 && acc + c >= target) {
        const frac = (target - acc) / c;
        const x = this.lo + (b + frac) * this.width;
        return Math.max(this.min, Math.min(this.max, x));
      }
      acc += c;
    }
    return this.max;
  }

  toJSON(): { lo: number; hi: number; bins: number; counts: number[]; count: number; mean: number | null } {
    return { lo: this.lo, hi: this.hi, bins: this.bins, counts: [...this.counts], count: this.count, mean: this.mean };
  }
}
