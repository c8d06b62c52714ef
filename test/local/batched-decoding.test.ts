import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, ProviderCallError } from "../../src/errors.ts";
import { runGenerate } from "../../src/generate/run.ts";
import {
  createLocalModel,
  DecodeStepBarrier,
  DETERMINISTIC_PIECE,
  maxPromptTokens,
  sequenceContextSize,
  SlotPool,
  type LocalGenerationDetails,
  type LocalLanguageModel,
} from "../../src/llm/local/index.ts";
import { pullModel } from "../../src/models/index.ts";
import { buildCfgStepRequest } from "../../src/steering/cfg.ts";
import { config, readJsonlFile, SEEDS, tmpDir, writeSeeds } from "../generate/helpers.ts";

const tick = () => new Promise((r) => setImmediate(r));

describe("SlotPool", () => {
  it("hands out the free slot with the best score, and makes later requests wait for a release", async () => {
    const pool = new SlotPool(["a", "b"]);
    const order: string[] = [];
    let releaseFirst!: () => void;
    const first = pool.use((s) => (s === "b" ? 5 : 1), (s) => new Promise<void>((r) => ((releaseFirst = r), order.push(`1:${s}`))));
    const second = pool.use(() => 0, async (s) => void order.push(`2:${s}`));
    let thirdStarted = false;
    const third = pool.use(() => 0, async (s) => void ((thirdStarted = true), order.push(`3:${s}`)));
    await tick();
    expect(order.slice(0, 2)).toEqual(["1:b", "2:a"]);
    await second;
    await third; // "a" came back after the second request
    expect(thirdStarted).toBe(true);
    releaseFirst();
    await first;
  });

  it("close() refuses waiting and new requests; idle() waits for the requests in flight", async () => {
    const pool = new SlotPool([1]);
    let release!: () => void;
    const running = pool.use(() => 0, () => new Promise<void>((r) => (release = r)));
    const waiting = pool.use(() => 0, async () => "ran");
    await tick();
    pool.close(new Error("disposed"));
    await expect(waiting).rejects.toThrow("disposed");
    await expect(pool.use(() => 0, async () => "ran")).rejects.toThrow("disposed");
    let idle = false;
    const idled = pool.idle().then(() => (idle = true));
    await tick();
    expect(idle).toBe(false);
    release();
    await running;
    await idled;
    expect(idle).toBe(true);
  });
});

describe("DecodeStepBarrier", () => {
  it("dispatches only when every guided request in flight has queued its next evaluation", async () => {
    const barrier = new DecodeStepBarrier();
    const a = barrier.join();
    const b = barrier.join();
    let dispatched = 0;
    const never = new Promise<void>(() => {});
    void barrier.evaluate(a, () => never);
    barrier.dispatchSchedule(() => dispatched++);
    await tick();
    await tick();
    expect(dispatched).toBe(0); // b has not queued yet
    void barrier.evaluate(b, () => never);
    await tick();
    expect(dispatched).toBe(1);
    expect(barrier.stats).toEqual({ dispatches: 1, membersPerDispatch: 2 });
  });

  it("a request that leaves releases the others; with no guided request, anything queued goes next cycle", async () => {
    const barrier = new DecodeStepBarrier();
    const a = barrier.join();
    const b = barrier.join();
    let dispatched = 0;
    void barrier.evaluate(a, () => new Promise<void>(() => {}));
    barrier.dispatchSchedule(() => dispatched++);
    await tick();
    expect(dispatched).toBe(0);
    barrier.leave(b);
    await tick();
    expect(dispatched).toBe(1);
    barrier.leave(a);
    barrier.dispatchSchedule(() => dispatched++);
    await tick();
    expect(dispatched).toBe(2);
  });
});

describe("context sizing", () => {
  it("one sequence holds the longest prompt plus twice the output tokens, padded to 256, at most the training context", () => {
    expect(sequenceContextSize({ maxPromptTokens: 300, maxOutputTokens: 100 }, 8192)).toBe(512);
    expect(sequenceContextSize({ maxPromptTokens: 300, maxOutputTokens: 120 }, 8192)).toBe(768);
    expect(sequenceContextSize({ maxPromptTokens: 9000, maxOutputTokens: 100 }, 8192)).toBe(8192);
    // cfg prompts hold one earlier sentence; stepwise ones all earlier steps; ladder none
    expect(maxPromptTokens({ steering: "cfg", steps: 8, maxSeedChars: 200, maxOutputTokens: 50, templateTokens: 100 })).toBe(400);
    expect(maxPromptTokens({ steering: "stepwise", steps: 3, maxSeedChars: 200, maxOutputTokens: 50, templateTokens: 100 })).toBe(500);
    expect(maxPromptTokens({ steering: "ladder", steps: 3, maxSeedChars: 200, maxOutputTokens: 50, templateTokens: 100 })).toBe(300);
  });
});

// The real model: SmolLM2-135M-Instruct (pulled into the cache on first use).
const ANCHORS = SEEDS.slice(0, 4);
const STEPS = 3;
const MAX_OUT = 32;

async function chain(model: LocalLanguageModel, anchor: string, candidates?: number): Promise<{ steps: string[]; tokens: number[][] }> {
  const steps: string[] = [];
  const tokens: number[][] = [];
  for (let i = 0; i < STEPS; i++) {
    const r = await model.generateGuided({ ...buildCfgStepRequest({ anchor, steps, guidance: 1.5, maxOutputTokens: MAX_OUT }), candidates });
    steps.push(r.text.trim() || `(empty ${i})`);
    tokens.push((r.raw as LocalGenerationDetails).tokens);
  }
  return { steps, tokens };
}

describe("many chains in one context (real SmolLM2 GGUF)", () => {
  let one: LocalLanguageModel;
  let four: LocalLanguageModel;
  beforeAll(async () => {
    await pullModel(undefined, { onProgress: (m) => process.stderr.write(`[models] ${m}\n`) });
    one = await createLocalModel({ model: "default", gpu: "off", threads: 1, contextSize: 512 });
    four = await createLocalModel({ model: "default", gpu: "off", threads: 1, contextSize: 512, parallel: 4 });
  }, 300_000);
  afterAll(async () => {
    await one?.dispose();
    await four?.dispose();
  });

  it("a context without --deterministic still batches; deterministic mode refuses a GPU and several threads", async () => {
    expect(four.deterministic).toBe(false);
    await expect(createLocalModel({ model: "default", gpu: "cuda", deterministic: true })).rejects.toThrow(/--deterministic decodes on the CPU/);
    await expect(createLocalModel({ model: "default", gpu: "off", threads: 2, deterministic: true })).rejects.toThrow(/one llama.cpp thread/);
  });

  it("deterministic mode feeds a prompt longer than a piece in pieces and decodes it", async () => {
    // a long prompt (> DETERMINISTIC_PIECE tokens) still decodes to sensible text in deterministic mode
    const det = await createLocalModel({ model: "default", gpu: "off", contextSize: 512, deterministic: true });
    try {
      expect(det.deterministic).toBe(true);
      const r = await det.generateGuided(buildCfgStepRequest({ anchor: ANCHORS[0]!, steps: [], guidance: 1.5, maxOutputTokens: MAX_OUT }));
      expect(r.text.length).toBeGreaterThan(0);
      expect(r.usage.inputTokens).toBeGreaterThan(DETERMINISTIC_PIECE);
    } finally {
      await det.dispose();
    }
  }, 120_000);

  it("more requests than slots wait for a free slot; every one completes, in one batch per step", async () => {
    const anchors = [...ANCHORS, ...SEEDS.slice(4, 7)];
    const reqs = anchors.map((anchor) => buildCfgStepRequest({ anchor, steps: [`${anchor.slice(0, -1)} today.`], guidance: 1.5, maxOutputTokens: MAX_OUT }));
    const alone: string[] = [];
    for (const r of reqs) alone.push((await one.generateGuided(r)).text);
    const before = { ...four.barrier.stats };
    const together = await Promise.all(reqs.map((r) => four.generateGuided(r).then((x) => x.text)));
    expect(together).toHaveLength(alone.length);
    for (const t of together) expect(t.length).toBeGreaterThan(0);
    // decode steps carried several requests each (1 would mean no batching)
    const dispatches = four.barrier.stats.dispatches - before.dispatches;
    expect((four.barrier.stats.membersPerDispatch - before.membersPerDispatch) / dispatches).toBeGreaterThan(1.4);
  }, 300_000);

  it("--timeout applies to local calls: a step that runs past it fails with a provider error", async () => {
    const req = buildCfgStepRequest({ anchor: ANCHORS[0]!, steps: ["A first rewrite of the sentence."], guidance: 1.5, maxOutputTokens: MAX_OUT });
    await expect(four.generateGuided({ ...req, timeoutMs: 0 })).rejects.toBeInstanceOf(ProviderCallError);
    await expect(four.generate({ messages: req.positive, maxOutputTokens: 8, timeoutMs: 0 })).rejects.toThrow(/--timeout 0 ms/);
    // the slot is free again afterwards
    expect((await four.generateGuided(req)).text.length).toBeGreaterThan(0);
  }, 120_000);

  it("a context that does not fit in memory is a clear error naming the flags that size it", async () => {
    const { checkContextFits } = await import("../../src/llm/local/index.ts");
    const { getLlama, LlamaLogLevel } = await import("node-llama-cpp");
    const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
    try {
      const m = await llama.loadModel({ modelPath: one.modelPath });
      const err = await checkContextFits({ model: m, contextSize: 4096, sequences: 16, parallel: 8, freeRam: 1 << 20 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConfigError);
      expect(String(err)).toMatch(/8 chain\(s\) in flight \(--concurrency\).*RAM.*lower --concurrency, --max-output-tokens or --max-seed-chars/);
      const ok = await checkContextFits({ model: m, contextSize: 512, sequences: 2, parallel: 1, freeRam: 2 ** 40 });
      expect(ok.cpuRam).toBeGreaterThan(0);
    } finally {
      await llama.dispose();
    }
  }, 120_000);
});

// --deterministic: a chain's output does not depend on how many chains decode beside it (N = 1, 2, 8),
// greedy and seeded sampling, exact CFG and top-K. Without it, late tokens differ at near-ties:
// llama.cpp's CPU attention rounds differently with the shape of the batch (batched-decoding.ts).
describe("deterministic batched decoding (real SmolLM2 GGUF)", () => {
  const models = new Map<number, LocalLanguageModel>();
  beforeAll(async () => {
    await pullModel(undefined, { onProgress: (m) => process.stderr.write(`[models] ${m}\n`) });
    for (const n of [1, 2, 8]) models.set(n, await createLocalModel({ model: "default", gpu: "off", contextSize: 512, parallel: n, deterministic: true }));
  }, 300_000);
  afterAll(async () => {
    for (const m of models.values()) await m.dispose();
  });

  const anchors = SEEDS.slice(0, 8);
  async function detChain(model: LocalLanguageModel, anchor: string, o: { candidates?: number; temperature?: number; seed?: number }) {
    const steps: string[] = [];
    const tokens: number[][] = [];
    for (let i = 0; i < STEPS; i++) {
      const req = buildCfgStepRequest({ anchor, steps, guidance: 1.5, maxOutputTokens: MAX_OUT, temperature: o.temperature, seed: o.seed });
      const r = await model.generateGuided({ ...req, candidates: o.candidates });
      steps.push(r.text.trim() || `(empty ${i})`);
      tokens.push((r.raw as LocalGenerationDetails).tokens);
    }
    return { steps, tokens };
  }
  /** All anchors with at most n chains at once (a worker pool, staggered starts: continuous batching). */
  async function runAll(n: number, o: Parameters<typeof detChain>[2]) {
    const model = models.get(n)!;
    const out: Awaited<ReturnType<typeof detChain>>[] = new Array(anchors.length);
    let next = 0;
    const before = { ...model.barrier.stats };
    await Promise.all(
      Array.from({ length: n }, async (_, w) => {
        for (let k = 0; k < w; k++) await tick();
        while (next < anchors.length) {
          const i = next++;
          out[i] = await detChain(model, anchors[i]!, o);
        }
      }),
    );
    const d = model.barrier.stats.dispatches - before.dispatches;
    return { out, carried: (model.barrier.stats.membersPerDispatch - before.membersPerDispatch) / Math.max(1, d) };
  }

  for (const [name, o] of [
    ["greedy, exact CFG", {}],
    ["greedy, top-20", { candidates: 20 }],
    ["seeded sampling (T 0.9), exact CFG", { temperature: 0.9, seed: 7 }],
    ["seeded sampling (T 0.9), top-20", { temperature: 0.9, seed: 7, candidates: 20 }],
  ] as const) {
    it(`${name}: the same tokens at N = 1, 2 and 8`, async () => {
      const alone = await runAll(1, o);
      for (const n of [2, 8]) {
        const together = await runAll(n, o);
        expect(together.out).toEqual(alone.out);
        // decode steps really carried several chains (1 would mean no batching; chains leave the
        // barrier between their steps and finish at different times, so not N either)
        expect(together.carried).toBeGreaterThan(n === 2 ? 1.2 : 1.4);
      }
    }, 600_000);
  }
});

describe("generate --provider local --concurrency N", () => {
  it("writes the same chains at --concurrency 3 as at --concurrency 1 with --deterministic (seeded: a retried step samples)", async () => {
    const dir = tmpDir();
    const input = writeSeeds(dir, SEEDS.slice(0, 3));
    const runs: Record<string, string[]>[] = [];
    for (const concurrency of [1, 3]) {
      const out = join(dir, `run-${concurrency}`);
      const s = await runGenerate(
        config({ input, out, provider: "local", model: "smollm2-135m-instruct", steering: "cfg", guidance: 1.5, steps: 2, concurrency, maxOutputTokens: 24, maxSeedChars: 300, gpu: "off", seed: 5, timeoutMs: 600_000, deterministic: true }),
      );
      expect(s.status).toBe("completed");
      runs.push(Object.fromEntries(readJsonlFile(join(out, "chains.jsonl")).map((c) => [c.id, c.steps])));
    }
    expect(Object.keys(runs[0]!)).toHaveLength(3);
    expect(runs[1]).toEqual(runs[0]);
  }, 300_000);
});
