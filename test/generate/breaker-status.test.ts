import { join } from "node:path";
import { readFileSync } from "node:fs";
import { getEventListeners } from "node:events";
import { spawn } from "node:child_process";
import { PROJECT_ROOT } from "../../src/config/paths.ts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runGenerate } from "../../src/generate/run.ts";
import { NoUsableChainsError, ProviderUnreachableError } from "../../src/errors.ts";
import { exitCodeFor, EXIT } from "../../src/cli/exit-codes.ts";
import { startOpenAIServer, type OpenAIServer } from "../servers/index.ts";
import { config, readJsonlFile, SEEDS, tmpDir, writeSeeds } from "./helpers.ts";

let server: OpenAIServer;
beforeAll(async () => {
  server = await startOpenAIServer();
});
afterAll(async () => server.close());

const compat = (input: string, out: string, extra: Record<string, unknown> = {}) =>
  config({ input, out, provider: "openai-compatible", model: "qwen-test", baseUrl: server.baseURL, steps: 3, concurrency: 2, maxRetries: 4, ...extra });

const chatRequests = () => server.requestsTo("/v1/chat/completions").length;
const manifest = (out: string) => JSON.parse(readFileSync(join(out, "run.json"), "utf8"));

describe("circuit breaker (issue 13)", () => {
  it("stops after N consecutive connection failures, saves what was paid for, exits 4; --resume completes", async () => {
    server.clearRequests();
    // the first 5 calls are answered (chain 1 and part of chain 2), then the server drops every connection
    server.setResponder((_req, ctx) => (ctx.index < 5 ? ctx.defaultReply() : { type: "reset" }));
    const dir = tmpDir();
    const out = join(dir, "run");
    const input = writeSeeds(dir, SEEDS.slice(0, 6));
    const err = await runGenerate(compat(input, out, { maxConnectionFailures: 3, concurrency: 1 })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProviderUnreachableError);
    expect(exitCodeFor(err)).toBe(EXIT.unreachable);
    expect(EXIT.unreachable).toBe(4);
    expect((err as Error).message).toMatch(/provider unreachable: 3 consecutive connection failures/);
    expect((err as Error).message).toMatch(/--resume/);
    // without the breaker every remaining chain would be tried maxRetries+1 = 5 times (6 chains: 30 calls)
    expect(chatRequests()).toBe(5 + 3);
    const m = manifest(out);
    expect(m.status).toBe("provider_unreachable");
    expect(m.message).toMatch(/consecutive connection failures/);
    expect(readJsonlFile(join(out, "chains.jsonl"))).toHaveLength(1);
    const paid = readJsonlFile(join(out, "responses.jsonl"));
    expect(paid).toHaveLength(5);

    // the server is back: resume finishes the run, and the 5 answers already paid for are not requested again
    server.setResponder(undefined);
    server.clearRequests();
    const summary = await runGenerate(compat(input, out, { resume: true, concurrency: 1 }));
    expect(summary.status).toBe("completed");
    expect(readJsonlFile(join(out, "chains.jsonl"))).toHaveLength(6);
    expect(chatRequests()).toBe(6 * 3 - 5);
    expect(summary.manifest.totals.cached_responses_reused).toBe(2);
  });

  it("a server that is down (connection refused) ends the run with exit 4 after N attempts, not after every chain's retries", async () => {
    const dead = await startOpenAIServer();
    const baseUrl = dead.baseURL;
    await dead.close();
    const dir = tmpDir();
    const out = join(dir, "run");
    const err = await runGenerate(
      config({ input: writeSeeds(dir, SEEDS), out, provider: "openai-compatible", model: "m", baseUrl, steps: 2, concurrency: 2, maxRetries: 4, maxConnectionFailures: 2 }),
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProviderUnreachableError);
    expect((err as ProviderUnreachableError).consecutiveFailures).toBeGreaterThanOrEqual(2);
    expect(manifest(out).status).toBe("provider_unreachable");
    expect(readJsonlFile(join(out, "chains.jsonl"))).toHaveLength(0);
  });

  it("CLI: a dead server ends generate with exit 4 and says how to resume", async () => {
    const dead = await startOpenAIServer();
    const baseUrl = dead.baseURL;
    await dead.close();
    const dir = tmpDir();
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(
        process.execPath,
        [join(PROJECT_ROOT, "bin/rankchain.js"), "generate", "--input", writeSeeds(dir, SEEDS.slice(0, 4)), "--out", join(dir, "run"), "--provider", "openai-compatible", "--model", "m", "--base-url", baseUrl, "--max-connection-failures", "2", "--max-retries", "1", "--quiet"],
        { env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: "skip" }, stdio: ["ignore", "ignore", "pipe"] },
      );
      let stderr = "";
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      child.on("exit", (code) => resolve({ code, stderr }));
    });
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/provider unreachable: \d+ consecutive connection failures/);
    expect(r.stderr).toMatch(/--resume continues/);
    expect(manifest(join(dir, "run")).status).toBe("provider_unreachable");
  });

  it("an answer resets the count: scattered connection failures do not trip the breaker", async () => {
    server.clearRequests();
    // every other call fails once with a reset; the retry succeeds
    server.setResponder((_req, ctx) => (ctx.index % 2 === 0 ? { type: "reset" } : ctx.defaultReply()));
    const dir = tmpDir();
    const out = join(dir, "run");
    const summary = await runGenerate(compat(writeSeeds(dir, SEEDS.slice(0, 3)), out, { maxConnectionFailures: 2, concurrency: 1 }));
    expect(summary.status).toBe("completed");
    expect(readJsonlFile(join(out, "chains.jsonl"))).toHaveLength(3);
    server.setResponder(undefined);
  });
});

describe("run status says whether the run produced usable data (issue 13)", () => {
  it("every chain empty (the model copies the anchor): status no_usable_chains, exit 1, empty chains counted", async () => {
    server.clearRequests();
    server.setResponder((req) => {
      const user = (req.body.messages as Array<{ role: string; content: string }>).filter((m) => m.role === "user").pop()!.content;
      const anchor = /<sentence>([\s\S]*?)<\/sentence>/.exec(user)![1]!;
      return { type: "text", text: anchor };
    });
    const dir = tmpDir();
    const out = join(dir, "run");
    const err = await runGenerate(compat(writeSeeds(dir, SEEDS.slice(0, 3)), out)).catch((e: unknown) => e);
    server.setResponder(undefined);
    expect(err).toBeInstanceOf(NoUsableChainsError);
    expect(exitCodeFor(err)).toBe(EXIT.failure);
    expect((err as Error).message).toMatch(/no usable chains: 3 empty and 0 shorter than --min-steps 3 \(chains ended early: duplicate 3\)/);
    const m = manifest(out);
    expect(m.status).toBe("no_usable_chains");
    expect(m.totals).toMatchObject({ chains_done: 3, chains_empty: 3, chains_short: 0, chains_usable: 0, min_steps: 3 });
    // the records are kept (they were paid for)
    expect(readJsonlFile(join(out, "chains.jsonl"))).toHaveLength(3);
  });

  it("chains shorter than --min-steps are counted; one usable chain makes the run completed", async () => {
    server.clearRequests();
    // chain of seed 0 copies at step 2 (short); the others drift normally
    server.setResponder((req, ctx) => {
      const user = (req.body.messages as Array<{ role: string; content: string }>).filter((m) => m.role === "user").pop()!.content;
      if (user.includes(SEEDS[0]!.slice(0, 20)) && /step 2 of/.test(user)) {
        const anchor = /<sentence>([\s\S]*?)<\/sentence>/.exec(user)![1]!;
        return { type: "text", text: anchor };
      }
      return ctx.defaultReply();
    });
    const dir = tmpDir();
    const out = join(dir, "run");
    const summary = await runGenerate(compat(writeSeeds(dir, SEEDS.slice(0, 2)), out, { minSteps: 2 }));
    server.setResponder(undefined);
    expect(summary.status).toBe("completed");
    expect(summary.manifest.totals).toMatchObject({ chains_done: 2, chains_empty: 0, chains_short: 1, chains_usable: 1, min_steps: 2 });
  });
});

describe("abort listeners (issue 13: MaxListenersExceededWarning)", () => {
  it("more than 10 calls add no listener to the run-wide abort signal and raise no warning", async () => {
    server.clearRequests();
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on("warning", onWarning);
    const abort = new AbortController();
    const dir = tmpDir();
    try {
      await runGenerate(compat(writeSeeds(dir, SEEDS.slice(0, 6)), join(dir, "run"), { concurrency: 1 }), { abortSignal: abort.signal });
    } finally {
      process.off("warning", onWarning);
    }
    expect(chatRequests()).toBe(18);
    // the generator's own forwarder (one) is all that stays on the run's signal
    expect(getEventListeners(abort.signal, "abort").length).toBeLessThanOrEqual(1);
    expect(warnings.filter((w) => w.name === "MaxListenersExceededWarning")).toEqual([]);
  });
});
