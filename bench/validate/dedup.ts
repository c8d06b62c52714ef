/**
 * Duplicate detection over a corpus: the LSH index of src/validate vs all-pairs brute force, same
 * vectors, one run. Prints time, exact cosine checks, recall of the LSH side, and the speed ratio.
 *
 *   npx tsx bench/validate/dedup.ts [N=10000] [DIM=384]
 *
 * The vectors are random unit vectors with planted near-duplicates (cosine 0.96–0.995), which is
 * the shape of the duplicate-chain check (one centroid per chain) at N chains.
 */
import { CosineLshIndex, dot, gaussianArray, normalize } from "../../src/validate/index.ts";
import { mulberry32 } from "../../src/util/random.ts";

const N = Number(process.argv[2] ?? 10000);
const DIM = Number(process.argv[3] ?? 384);
const THRESHOLD = 0.95;

function makeCorpus(): Float32Array[] {
  const g = gaussianArray(N * DIM, 1);
  const rand = mulberry32(2);
  const out: Float32Array[] = [];
  for (let i = 0; i < N; i++) {
    if (i > 0 && rand() < 0.1) {
      // plant: a copy of an earlier vector at cosine c
      const src = out[Math.floor(rand() * i)]!;
      const c = 0.96 + 0.035 * rand();
      const u = normalize(g.subarray(i * DIM, (i + 1) * DIM));
      const p = dot(u, src);
      const perp = normalize(u.map((x, k) => x - p * src[k]!) as Float32Array);
      out.push(src.map((x, k) => c * x + Math.sqrt(1 - c * c) * perp[k]!) as Float32Array);
    } else out.push(normalize(g.subarray(i * DIM, (i + 1) * DIM)));
  }
  return out;
}

const corpus = makeCorpus();

// brute force: every new item against all earlier ones
let t0 = performance.now();
let bruteChecks = 0;
const bruteDup = new Set<number>();
for (let i = 0; i < N; i++) {
  for (let j = 0; j < i; j++) {
    bruteChecks++;
    if (dot(corpus[i]!, corpus[j]!) >= THRESHOLD) {
      bruteDup.add(i);
      break;
    }
  }
}
const bruteMs = performance.now() - t0;

t0 = performance.now();
const index = new CosineLshIndex<number>({ dimensions: DIM });
const lshDup = new Set<number>();
for (let i = 0; i < N; i++) {
  if (index.nearest(corpus[i]!, THRESHOLD)) lshDup.add(i);
  index.add(i, corpus[i]!);
}
const lshMs = performance.now() - t0;

const found = [...bruteDup].filter((i) => lshDup.has(i)).length;
const falsePos = [...lshDup].filter((i) => !bruteDup.has(i)).length;
console.log(`corpus: ${N} vectors × ${DIM} dims, ${bruteDup.size} duplicates at cosine ≥ ${THRESHOLD}`);
console.log(`brute force : ${bruteMs.toFixed(0)} ms, ${bruteChecks} exact checks (early exit at first hit)`);
console.log(`LSH index   : ${lshMs.toFixed(0)} ms, ${index.exactChecks} exact checks, recall ${(found / Math.max(1, bruteDup.size)).toFixed(4)}, false positives ${falsePos}`);
console.log(`speed-up (brute / LSH): ${(bruteMs / lshMs).toFixed(2)}x; exact checks ratio ${(bruteChecks / Math.max(1, index.exactChecks)).toFixed(1)}x`);
