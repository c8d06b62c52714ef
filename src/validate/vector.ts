/** Small dense-vector helpers. Vectors are Float32Array; cosine works on unnormalised input too. */

export function dot(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new Error(`vector dimensions differ: ${a.length} vs ${b.length}`);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

export function norm(a: Float32Array): number {
  return Math.sqrt(dot(a, a));
}

/** Returns a unit-length copy (a zero vector stays zero). */
export function normalize(a: Float32Array): Float32Array {
  const n = norm(a);
  const out = new Float32Array(a.length);
  if (n === 0) return out;
  for (let i = 0; i < a.length; i++) out[i] = a[i]! / n;
  return out;
}

/** Cosine similarity; 0 when either vector is zero. */
export function cosine(a: Float32Array, b: Float32Array): number {
  const na = norm(a);
  const nb = norm(b);
  if (na === 0 || nb === 0) return 0;
  return dot(a, b) / (na * nb);
}

/** Mean of unit vectors, normalised again: the direction a group of sentences shares. */
export function centroid(vectors: readonly Float32Array[]): Float32Array {
  if (vectors.length === 0) throw new Error("centroid of no vectors");
  const d = vectors[0]!.length;
  const sum = new Float32Array(d);
  for (const v of vectors) {
    const u = normalize(v);
    for (let i = 0; i < d; i++) sum[i]! += u[i]!;
  }
  return normalize(sum);
}

/** Full cosine matrix of a small set (one chain: anchor + steps). */
export function cosineMatrix(vectors: readonly Float32Array[]): number[][] {
  const units = vectors.map(normalize);
  const n = units.length;
  const m: number[][] = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  for (let i = 0; i < n; i++) {
    m[i]![i] = norm(vectors[i]!) === 0 ? 0 : 1;
    for (let j = i + 1; j < n; j++) {
      const c = dot(units[i]!, units[j]!);
      m[i]![j] = c;
      m[j]![i] = c;
    }
  }
  return m;
}
