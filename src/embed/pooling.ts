import type { Pooling } from "./model-dir.ts";

/**
 * Pools token states [batch, seq, hidden] (row-major) into one vector per row, honouring the
 * attention mask, the same way sentence-transformers' Pooling module does; optionally
 * L2-normalises (its Normalize module).
 */
export function poolHiddenStates(
  hidden: Float32Array,
  dims: readonly [number, number, number],
  mask: ArrayLike<number | bigint>,
  pooling: Pooling,
  normalize: boolean,
): Float32Array[] {
  const [batch, seq, width] = dims;
  const out: Float32Array[] = [];
  for (let b = 0; b < batch; b++) {
    const v = new Float32Array(width);
    const base = b * seq * width;
    if (pooling === "cls") {
      v.set(hidden.subarray(base, base + width));
    } else if (pooling === "mean") {
      let count = 0;
      for (let t = 0; t < seq; t++) {
        if (Number(mask[b * seq + t]) === 0) continue;
        count++;
        const off = base + t * width;
        for (let h = 0; h < width; h++) v[h]! += hidden[off + h]!;
      }
      const c = Math.max(count, 1e-9);
      for (let h = 0; h < width; h++) v[h]! /= c;
    } else {
      v.fill(-Infinity);
      for (let t = 0; t < seq; t++) {
        if (Number(mask[b * seq + t]) === 0) continue;
        const off = base + t * width;
        for (let h = 0; h < width; h++) if (hidden[off + h]! > v[h]!) v[h] = hidden[off + h]!;
      }
      for (let h = 0; h < width; h++) if (v[h] === -Infinity) v[h] = 0;
    }
    if (normalize) {
      let n = 0;
      for (let h = 0; h < width; h++) n += v[h]! * v[h]!;
      n = Math.max(Math.sqrt(n), 1e-12);
      for (let h = 0; h < width; h++) v[h]! /= n;
    }
    out.push(v);
  }
  return out;
}
