/** Vector helpers for embeddings (Float32Array or number[]). */
export type Vector = ArrayLike<number>;

/** Dot product; for L2-normalised vectors this is the cosine similarity. */
export function dot(a: Vector, b: Vector): number {
  if (a.length !== b.length) throw new Error(`dot: dimension mismatch ${a.length} vs ${b.length}`);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

export function norm(a: Vector): number {
  return Math.sqrt(dot(a, a));
}

/** Cosine similarity of any two vectors; 0 when either is the zero vector. */
export function cosine(a: Vector, b: Vector): number {
  if (a.length !== b.length) throw new Error(`cosine: dimension mismatch ${a.length} vs ${b.length}`);
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    ab += x * y;
    aa += x * x;
    bb += y * y;
  }
  const d = Math.sqrt(aa) * Math.sqrt(bb);
  return d === 0 ? 0 : ab / d;
}

/** Returns a new L2-normalised copy (the zero vector stays zero). */
export function l2normalize(a: Vector): Float32Array {
  const out = Float32Array.from(a);
  const n = norm(out);
  if (n > 0) for (let i = 0; i < out.length; i++) out[i]! /= n;
  return out;
}

/** Cosine-similarity matrix of `rows` × `cols` (row-major Float64Array of rows.length × cols.length). */
export function cosineMatrix(rows: Vector[], cols: Vector[], normalized = false): Float64Array {
  const out = new Float64Array(rows.length * cols.length);
  for (let i = 0; i < rows.length; i++) {
    for (let j = 0; j < cols.length; j++) {
      out[i * cols.length + j] = normalized ? dot(rows[i]!, cols[j]!) : cosine(rows[i]!, cols[j]!);
    }
  }
  return out;
}
