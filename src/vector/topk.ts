/**
 * Exact k-nearest-neighbour search by inner product over a flat matrix of unit vectors (cosine for
 * L2-normalised rows). Each query keeps a size-k min-heap, so memory is O(k) per query whatever the
 * pool size; time is O(pool × d) per query. For large pools use the approximate index (ann.ts).
 */

/** One query's neighbours, best first. `ids` are row numbers of the pool. */
export interface Neighbours {
  ids: Int32Array;
  scores: Float32Array;
}

function checkMatrix(name: string, m: Float32Array, d: number): number {
  if (!Number.isInteger(d) || d < 1) throw new Error(`${name}: dimensions must be a positive integer, got ${d}`);
  if (m.length % d !== 0) throw new Error(`${name}: a flat matrix of ${m.length} numbers is not a multiple of ${d} dimensions`);
  return m.length / d;
}

/**
 * The k pool rows with the highest inner product with each query row. Rows for which `exclude(q, id)`
 * is true are skipped (they neither count toward k nor appear). Ties go to the lower row number.
 */
export function exactTopK(
  pool: Float32Array,
  queries: Float32Array,
  dimensions: number,
  k: number,
  exclude?: (query: number, id: number) => boolean,
): Neighbours[] {
  const n = checkMatrix("exactTopK pool", pool, dimensions);
  const nq = checkMatrix("exactTopK queries", queries, dimensions);
  if (!Number.isInteger(k) || k < 1) throw new Error(`exactTopK: k must be a positive integer, got ${k}`);
  const d = dimensions;
  const out: Neighbours[] = [];
  const heapIds = new Int32Array(k);
  const heapScores = new Float64Array(k);
  for (let q = 0; q < nq; q++) {
    const qo = q * d;
    let size = 0;
    for (let id = 0; id < n; id++) {
      if (exclude && exclude(q, id)) continue;
      const po = id * d;
      let s = 0;
      for (let i = 0; i < d; i++) s += queries[qo + i]! * pool[po + i]!;
      if (size < k) {
        // sift up
        let c = size++;
        heapIds[c] = id;
        heapScores[c] = s;
        while (c > 0) {
          const p = (c - 1) >> 1;
          if (worse(heapScores[c]!, heapIds[c]!, heapScores[p]!, heapIds[p]!)) {
            swap(heapIds, heapScores, c, p);
            c = p;
          } else break;
        }
      } else if (worse(heapScores[0]!, heapIds[0]!, s, id)) {
        heapIds[0] = id;
        heapScores[0] = s;
        // sift down
        let c = 0;
        for (;;) {
          const l = 2 * c + 1;
          const r = l + 1;
          let m = c;
          if (l < size && worse(heapScores[l]!, heapIds[l]!, heapScores[m]!, heapIds[m]!)) m = l;
          if (r < size && worse(heapScores[r]!, heapIds[r]!, heapScores[m]!, heapIds[m]!)) m = r;
          if (m === c) break;
          swap(heapIds, heapScores, c, m);
          c = m;
        }
      }
    }
    const order = Array.from({ length: size }, (_, i) => i).sort((a, b) =>
      heapScores[b]! !== heapScores[a]! ? heapScores[b]! - heapScores[a]! : heapIds[a]! - heapIds[b]!,
    );
    out.push({ ids: Int32Array.from(order, (i) => heapIds[i]!), scores: Float32Array.from(order, (i) => heapScores[i]!) });
  }
  return out;
}

/** Is (s1, id1) ranked below (s2, id2)? Lower score, or equal score and higher id. */
function worse(s1: number, id1: number, s2: number, id2: number): boolean {
  return s1 < s2 || (s1 === s2 && id1 > id2);
}

function swap(ids: Int32Array, scores: Float64Array, a: number, b: number): void {
  const ti = ids[a]!;
  ids[a] = ids[b]!;
  ids[b] = ti;
  const ts = scores[a]!;
  scores[a] = scores[b]!;
  scores[b] = ts;
}

/** L2-normalises the rows of a flat matrix in place (zero rows stay zero); returns it. */
export function normalizeRows(m: Float32Array, dimensions: number): Float32Array {
  const n = checkMatrix("normalizeRows", m, dimensions);
  for (let r = 0; r < n; r++) {
    const o = r * dimensions;
    let s = 0;
    for (let i = 0; i < dimensions; i++) s += m[o + i]! * m[o + i]!;
    if (s === 0) continue;
    const inv = 1 / Math.sqrt(s);
    for (let i = 0; i < dimensions; i++) m[o + i]! *= inv;
  }
  return m;
}

/** Inner product of row a of matrix A with row b of matrix B (same dimensions). */
export function rowDot(a: Float32Array, ra: number, b: Float32Array, rb: number, dimensions: number): number {
  const oa = ra * dimensions;
  const ob = rb * dimensions;
  let s = 0;
  for (let i = 0; i < dimensions; i++) s += a[oa + i]! * b[ob + i]!;
  return s;
}
