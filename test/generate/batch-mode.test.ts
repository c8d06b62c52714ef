import { spawn } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runGenerate } from "../../src/generate/run.ts";
import { batchPrice, costUsd, DEFAULT_PRICES } from "../../src/config/prices.ts";
import { PROJECT_ROOT } from "../../src/config/paths.ts";
import { startAnthropicServer, startOpenAIServer, type AnthropicServer, type OpenAIServer } from "../servers/index.ts";
import { config, readJsonlFile, SEEDS, tmpDir, writeSeeds } from "./helpers.ts";

const OPENAI_KEY = "sk-test-batch-0123456789abcdefghijklmnop";
const ANTHROPIC_KEY = "sk-ant-test_batch0123456789abcdefghijklmnop";
let openai: OpenAIServer;
let anthropic: AnthropicServer;
beforeAll(async () => {
  process.env.OPENAI_API_KEY = OPENAI_KEY;
  process.env.ANTHROPIC_API_KEY = ANTHROPIC_KEY;
  openai = await startOpenAIServer({ apiKey: OPENAI_KEY });
  anthropic = await startAnthropicServer({ apiKey: ANTHROPIC_KEY });
});
afterAll(async () => {
  await openai.close();
  await anthropic.close();
});

const mini = DEFAULT_PRICES.models["openai/gpt-4o-mini"]!;
const fast = { pollSeconds: 0.02 };
type Entry = { type: string; id: string; usd: number; input_tokens: number; output_tokens: number; estimated?: boolean; key?: string };

/** Every reservation settled exactly once; returns the charges. */
function checkLedger(out: string): Entry[] {
  const entries = readJsonlFile<Entry>(join(out, "ledger.jsonl"));
  const reserves = entries.filter((e) => e.type === "reserve");
  const settles = entries.filter((e) => e.type !== "reserve");
  expect(new Set(reserves.map((e) => e.id)).size).toBe(reserves.length);
  expect(settles.map((e) => e.id).sort()).toEqual(reserves.map((e) => e.id).sort());
  return entries.filter((e) => e.type === "charge");
}

describe("--mode batch (loopback Files + Batches and Message Batches, real SDK clients)", { timeout: 240_000 }, () => {
  it("stepwise on OpenAI: one batch per step wave, no online calls, charged at the batch price", async () => {
    openai.batchEndpoints.behavior = () => ({ pollsBeforeEnd: 2 });
    openai.clearRequests();
    const before = openai.batchEndpoints.batches.length;
    const dir = tmpDir();
    const out = join(dir, "run");
    const s = await runGenerate(config({ input: writeSeeds(dir, SEEDS.slice(0, 4)), out, provider: "openai", model: "gpt-4o-mini", baseUrl: openai.baseURL, steps: 3, mode: "batch", maxUsd: 1, ...fast }));
    expect(s.status).toBe("completed");
    const chains = readJsonlFile(join(out, "chains.jsonl"));
    expect(chains).toHaveLength(4);
    for (const c of chains) expect(c.steps).toHaveLength(3);
    const batches = openai.batchEndpoints.batches.slice(before);
    expect(batches).toHaveLength(3);
    expect(batches.reduce((n, b) => n + b.lines.length, 0)).toBe(12);
    expect(batches[0]!.lines).toHaveLength(4);
    expect(openai.requests.filter((r) => r.path === "/v1/chat/completions")).toHaveLength(0);
    expect(openai.requests.filter((r) => r.method === "POST" && r.path === "/v1/files")).toHaveLength(batches.length);
    const charges = checkLedger(out);
    expect(charges).toHaveLength(12);
    expect(charges.every((c) => !c.estimated)).toBe(true);
    const half = batchPrice(mini);
    const paid = charges.reduce((a, c) => a + c.usd, 0);
    expect(paid).toBeCloseTo(charges.reduce((a, c) => a + costUsd(half, c.input_tokens, c.output_tokens), 0), 12);
    expect(paid).toBeCloseTo(charges.reduce((a, c) => a + costUsd(mini, c.input_tokens, c.output_tokens), 0) / 2, 12);
    expect(s.manifest.totals.usd).toBeCloseTo(paid, 9);
    const log = readJsonlFile(join(out, "batches.jsonl"));
    expect(log.filter((e) => e.type === "collected")).toHaveLength(batches.length);
  });

  it("ladder on Anthropic: one Message Batch, forced-tool results parsed", async () => {
    anthropic.batchEndpoints.behavior = () => ({ pollsBeforeEnd: 1 });
    const before = anthropic.batchEndpoints.batches.length;
    const dir = tmpDir();
    const out = join(dir, "run");
    const s = await runGenerate(config({ input: writeSeeds(dir, SEEDS.slice(0, 3)), out, provider: "anthropic", model: "claude-haiku-4-5", baseUrl: anthropic.baseURL, steering: "ladder", steps: 4, maxOutputTokens: 500, mode: "batch", ...fast }));
    expect(s.status).toBe("completed");
    const chains = readJsonlFile(join(out, "chains.jsonl"));
    expect(chains).toHaveLength(3);
    for (const c of chains) expect(c.steps).toHaveLength(4);
    expect(anthropic.batchEndpoints.batches.slice(before)).toHaveLength(1);
    expect(anthropic.requests.filter((r) => r.path === "/v1/messages")).toHaveLength(0);
    expect(checkLedger(out)).toHaveLength(3);
  });

  it("an expired batch and a partially failed one: the unfinished and failed requests go into follow-up batches; only what ran is charged", async () => {
    // first batch expires after running 2 of its 4 lines; in the second, one line fails with a 500
    const before = openai.batchEndpoints.batches.length;
    openai.batchEndpoints.behavior = (i) => (i === before ? { expireAfter: 2 } : {});
    let failed = 0;
    openai.setResponder((_r, ctx) => {
      if (openai.batchEndpoints.batches.length === before + 2 && failed === 0) {
        failed++;
        return { type: "error", status: 500 };
      }
      return ctx.defaultReply();
    });
    const dir = tmpDir();
    const out = join(dir, "run");
    const s = await runGenerate(config({ input: writeSeeds(dir, SEEDS.slice(0, 4)), out, provider: "openai", model: "gpt-4o-mini", baseUrl: openai.baseURL, steps: 1, mode: "batch", maxUsd: 1, ...fast }));
    openai.setResponder(undefined);
    expect(s.status).toBe("completed");
    expect(readJsonlFile(join(out, "chains.jsonl"))).toHaveLength(4);
    const batches = openai.batchEndpoints.batches.slice(before);
    expect(batches[0]!.status).toBe("expired");
    expect(batches[1]!.lines).toHaveLength(2); // the two expired requests
    expect(failed).toBe(1);
    expect(batches[2]!.lines).toHaveLength(1); // the failed one
    const ran = batches.reduce((n, b) => n + b.ran, 0);
    expect(ran).toBe(5);
    const charges = checkLedger(out);
    expect(charges).toHaveLength(4); // 4 successes charged; the 2 expired and the 500 released
    const releases = readJsonlFile<Entry>(join(out, "ledger.jsonl")).filter((e) => e.type === "release");
    expect(releases).toHaveLength(3);
  });

  it("an OpenAI batch refused at validation: its requests are released and submitted again in the next batch", async () => {
    const before = openai.batchEndpoints.batches.length;
    openai.batchEndpoints.behavior = (i) => (i === before ? { failValidation: "line 1: model not found in this project" } : {});
    const dir = tmpDir();
    const out = join(dir, "run");
    const s = await runGenerate(config({ input: writeSeeds(dir, SEEDS.slice(0, 2)), out, provider: "openai", model: "gpt-4o-mini", baseUrl: openai.baseURL, steps: 1, mode: "batch", maxUsd: 1, ...fast }));
    expect(s.status).toBe("completed");
    const batches = openai.batchEndpoints.batches.slice(before);
    expect(batches.map((b) => b.status)).toEqual(["failed", "completed"]);
    expect(batches[0]!.ran).toBe(0);
    const entries = readJsonlFile<Entry>(join(out, "ledger.jsonl"));
    expect(entries.filter((e) => e.type === "release")).toHaveLength(2);
    expect(checkLedger(out)).toHaveLength(2);
  });

  it("kill -9 while polling, then --resume: the pending batch is collected, nothing is submitted or paid twice", async () => {
    const before = openai.batchEndpoints.batches.length;
    openai.batchEndpoints.behavior = () => ({ pollsBeforeEnd: 1_000_000 });
    const dir = tmpDir();
    const out = join(dir, "run");
    const input = writeSeeds(dir, SEEDS.slice(0, 3));
    const args = ["generate", "--input", input, "--out", out, "--provider", "openai", "--model", "gpt-4o-mini", "--base-url", openai.baseURL, "--steps", "2", "--mode", "batch", "--poll-seconds", "0.02", "--max-usd", "1", "--quiet"];
    const env = { ...process.env, OPENAI_API_KEY: OPENAI_KEY, ONNXRUNTIME_NODE_INSTALL: "skip" };
    const child = spawn(process.execPath, [join(PROJECT_ROOT, "bin/rankchain.js"), ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
    for (let i = 0; i < 2400; i++) {
      const b = openai.batchEndpoints.batches[before];
      if (b && b.polls >= 3) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(openai.batchEndpoints.batches[before], stderr).toBeDefined();
    child.kill("SIGKILL");
    await exited;
    const open = readJsonlFile<Entry>(join(out, "ledger.jsonl"));
    expect(open.filter((e) => e.type === "reserve")).toHaveLength(3);
    expect(open.filter((e) => e.type !== "reserve")).toHaveLength(0);
    // the provider finishes the batch while no process watches it
    openai.batchEndpoints.batches[before]!.behavior.pollsBeforeEnd = 0;
    openai.batchEndpoints.behavior = () => ({});
    const resumed = spawn(process.execPath, [join(PROJECT_ROOT, "bin/rankchain.js"), ...args, "--resume"], { env, stdio: ["ignore", "pipe", "pipe"] });
    let err2 = "";
    resumed.stderr.on("data", (d: Buffer) => (err2 += d.toString()));
    const code = await new Promise<number | null>((r) => resumed.on("exit", (c) => r(c)));
    expect(code, err2).toBe(0);
    const batches = openai.batchEndpoints.batches.slice(before);
    expect(batches).toHaveLength(2); // the first wave (collected after the kill) and the second
    expect(batches[0]!.ran).toBe(3);
    expect(batches[1]!.lines).toHaveLength(3);
    const allIds = batches.flatMap((b) => b.lines.map((l) => l.custom_id));
    expect(new Set(allIds).size).toBe(allIds.length);
    const charges = checkLedger(out);
    expect(charges).toHaveLength(6);
    expect(charges.every((c) => !c.estimated)).toBe(true);
    expect(readJsonlFile(join(out, "chains.jsonl"))).toHaveLength(3);
  });
});
