/**
 * rankchain as a library: documents → seeds → cost estimate → chains (local SmolLM2, no key) →
 * validation → a sentence-transformers dataset (st-scores), with progress events, an AbortSignal and typed
 * errors. The tests run it (test/library/library.test.ts).
 *
 *   npm run build                                     # the package's entry points live in dist/
 *   npx tsx examples/library.ts DOCS_DIR WORK_DIR     # e.g. test/seeds/corpus /tmp/rankchain-lib
 */
import { join } from "node:path";
import {
  ConfigError,
  InterruptedError,
  estimate,
  exitCodeFor,
  exportDataset,
  extractSeeds,
  generate,
  validate,
  type SeedsProgress,
} from "rankchain";

const [docs, work] = process.argv.slice(2);
if (!docs || !work) {
  console.error("usage: tsx examples/library.ts DOCS_DIR WORK_DIR");
  process.exit(2);
}

// 1. seeds from a team's own documents (character-trigram embedder: no model needed for this step)
const phases = new Set<SeedsProgress["phase"]>();
const seeds = await extractSeeds({
  from: [docs],
  out: join(work, "seeds.jsonl"),
  sample: 3,
  holdout: 0.2,
  embedder: "hashed",
  field: "doc.body",
  column: "body",
  onProgress: (e) => phases.add(e.phase),
});

// 2. what a hosted model would cost for these seeds (offline; spends nothing)
const cost = await estimate({ input: seeds.out, provider: "openai", model: "gpt-4o-mini", steps: 3 });

// 3. chains with the local default model (no key; CFG steering); progress per chain
let chainsSeen = 0;
const run = await generate({
  input: seeds.out,
  out: join(work, "run"),
  provider: "local",
  model: "smollm2-135m-instruct",
  steering: "cfg",
  guidance: 1.5,
  cfgTopK: 20,
  steps: 2,
  concurrency: 1,
  maxOutputTokens: 48,
  temperature: 0.7,
  seed: 3,
  gpu: "off",
  quiet: true,
  onProgress: (e) => {
    if (e.phase === "chain") chainsSeen++;
  },
});

// 4. the embedding gate (lenient: flag, keep), then a scored-pairs dataset for sentence-transformers
const gate = await validate({ runDir: run.out, embedder: "all-MiniLM-L6-v2", policy: "lenient", minSteps: 1, report: false });
// (a 135M model sometimes keeps no step at all; export then says so with a ConfigError)
let datasetRows: Record<string, { train: number; test: number }> | string;
try {
  datasetRows = (await exportDataset({ runDir: run.out, format: "st-scores", out: join(work, "dataset"), testFraction: 0 })).rows;
} catch (e) {
  if (!(e instanceof ConfigError)) throw e;
  datasetRows = e.message;
}

// 5. typed errors carry the CLI's exit codes; an AbortSignal stops a run
const codes: Record<string, number> = {};
try {
  await extractSeeds({ from: [docs], out: join(work, "x.jsonl"), holdout: 2 });
} catch (e) {
  if (e instanceof ConfigError) codes.bad_option = exitCodeFor(e);
}
try {
  await generate({ input: seeds.out, out: join(work, "aborted"), steps: 2, signal: AbortSignal.abort() });
} catch (e) {
  if (e instanceof InterruptedError) codes.aborted = exitCodeFor(e);
}

console.log(
  JSON.stringify({
    seeds: seeds.seeds,
    seed_phases: [...phases].sort(),
    estimate_usd: cost.usd,
    chains: run.manifest.totals.chains_done,
    progress_events: chainsSeen,
    validated: gate.counts,
    dataset_rows: datasetRows,
    exit_codes: codes,
  }),
);
