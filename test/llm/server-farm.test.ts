import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ServerFarmModel } from "../../src/llm/openai/server-farm.ts";
import { ProviderCallError, ProviderUnreachableError } from "../../src/errors.ts";
import { runGenerate } from "../../src/generate/run.ts";
import { startOpenAIServer, type OpenAIServer, type Responder } from "../servers/index.ts";
import { config, readJsonlFile, SEEDS, tmpDir, writeSeeds } from "../generate/helpers.ts";

const open: OpenAIServer[] = [];
async function server(opts: Parameters<typeof startOpenAIServer>[0] = {}): Promise<OpenAIServer> {
  const s = await startOpenAIServer(opts);
  open.push(s);
  return s;
}
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()));
});

const req = (text: string) => ({ messages: [{ role: "user" as const, content: `Rewrite: <sentence>${text}</sentence>` }], maxOutputTokens: 40 });

describe("--base-url URL1,URL2: a farm of OpenAI-compatible servers", { timeout: 120_000 }, () => {
  it("routes to the server with the fewest requests outstanding (never more than its share in flight)", async () => {
    const inFlight = new Map<number, number>();
    const peak = new Map<number, number>();
    const tracking = (id: number): Responder => async (_r, ctx) => {
      inFlight.set(id, (inFlight.get(id) ?? 0) + 1);
      peak.set(id, Math.max(peak.get(id) ?? 0, inFlight.get(id)!));
      await new Promise((r) => setTimeout(r, 30));
      inFlight.set(id, inFlight.get(id)! - 1);
      return ctx.defaultReply();
    };
    const a = await server({ responder: tracking(0) });
    const b = await server({ responder: tracking(1) });
    const farm = new ServerFarmModel([a.baseURL, b.baseURL], { model: "llama-3-8b" });
    // 4 callers at a time, 12 calls
    let next = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (next < 12) await farm.generate(req(SEEDS[next++ % SEEDS.length]!));
      }),
    );
    const stats = farm.serverStats();
    expect(stats.map((s) => s.ok)).toEqual([6, 6]);
    expect(peak.get(0)).toBeLessThanOrEqual(2);
    expect(peak.get(1)).toBeLessThanOrEqual(2);
  });

  it("skips a dead server, health-checks it after the back-off, and comes back to it", async () => {
    const a = await server();
    const b = await server();
    const bPort = b.port;
    await b.close();
    let clock = 1_000_000;
    const farm = new ServerFarmModel([a.baseURL, b.baseURL], { model: "llama-3-8b" }, { initialBackoffMs: 1000, now: () => clock });
    // first call to b fails (connection refused) and takes it out of rotation
    const results = await Promise.allSettled([farm.generate(req(SEEDS[0]!)), farm.generate(req(SEEDS[1]!))]);
    const failed = results.filter((r) => r.status === "rejected");
    expect(failed).toHaveLength(1);
    expect((failed[0] as PromiseRejectedResult).reason).toBeInstanceOf(ProviderCallError);
    expect(farm.serverStats()[1]).toMatchObject({ healthy: false, downs: 1 });
    a.clearRequests();
    for (let i = 0; i < 5; i++) await farm.generate(req(SEEDS[i]!));
    expect(a.requestsTo("/v1/chat/completions")).toHaveLength(5);
    // back-off passes while b is still dead: the health check fails, the back-off doubles
    clock += 1001;
    await farm.generate(req(SEEDS[0]!));
    expect(farm.serverStats()[1]).toMatchObject({ healthy: false, healthChecks: 1 });
    // b comes back at the same address; after the doubled back-off it is checked and used again
    const b2 = await server({ port: bPort });
    clock += 1500;
    await farm.generate(req(SEEDS[1]!));
    expect(farm.serverStats()[1]!.healthy).toBe(false);
    clock += 600;
    for (let i = 0; i < 4; i++) await farm.generate(req(SEEDS[i]!));
    expect(b2.requests.some((r) => r.method === "GET" && r.path === "/v1/models")).toBe(true);
    expect(b2.requestsTo("/v1/chat/completions").length).toBeGreaterThanOrEqual(2);
    expect(farm.serverStats()[1]).toMatchObject({ healthy: true, healthChecks: 2 });
  });

  it("generate with a farm where one server is dead: every chain done, per-server lines in run.json", async () => {
    const a = await server();
    const dead = await server();
    const deadUrl = dead.baseURL;
    await dead.close();
    const dir = tmpDir();
    const out = join(dir, "run");
    const summary = await runGenerate(
      config({ input: writeSeeds(dir, SEEDS.slice(0, 4)), out, provider: "openai-compatible", model: "llama-3-8b", baseUrl: `${deadUrl},${a.baseURL}`, steps: 2, concurrency: 2 }),
    );
    expect(summary.status).toBe("completed");
    expect(readJsonlFile(join(out, "chains.jsonl"))).toHaveLength(4);
    const servers = (summary.manifest as any).servers as Array<{ url: string; ok: number; failed: number; downs: number }>;
    expect(servers.map((s) => s.url)).toEqual([deadUrl, a.baseURL]);
    expect(servers[0]).toMatchObject({ ok: 0, downs: 1 });
    expect(servers[0]!.failed).toBeGreaterThanOrEqual(1);
    expect(servers[1]!.ok).toBe(8);
  });
  it("a server that crashes with calls in flight does not trip the circuit breaker while another answers; every server dead still does (exit 4)", async () => {
    const a = await server({ responder: async (_r, ctx) => (await new Promise((r) => setTimeout(r, 300)), ctx.defaultReply()) });
    // b takes calls until 3 are in flight, then drops all their connections at once (a crash)
    let inFlight = 0;
    let crash: () => void = () => {};
    const crashed = new Promise<void>((r) => (crash = r));
    const b = await server({
      responder: async () => {
        if (++inFlight >= 3) crash();
        await Promise.race([crashed, new Promise((r) => setTimeout(r, 2000))]);
        return { type: "reset" };
      },
    });
    const dir = tmpDir();
    const out = join(dir, "run");
    const summary = await runGenerate(
      config({ input: writeSeeds(dir, SEEDS.slice(0, 8)), out, provider: "openai-compatible", model: "llama-3-8b", baseUrl: `${b.baseURL},${a.baseURL}`, steps: 2, concurrency: 8, maxConnectionFailures: 2 }),
    );
    expect(summary.status).toBe("completed");
    expect(readJsonlFile(join(out, "chains.jsonl"))).toHaveLength(8);
    const servers = (summary.manifest as any).servers as Array<{ failed: number }>;
    expect(servers[0]!.failed).toBeGreaterThanOrEqual(3);

    const deadA = a.baseURL;
    await a.close();
    await b.close();
    const err = await runGenerate(
      config({ input: writeSeeds(dir, SEEDS.slice(0, 8)), out: join(dir, "run2"), provider: "openai-compatible", model: "llama-3-8b", baseUrl: `${b.baseURL},${deadA}`, steps: 2, concurrency: 4, maxConnectionFailures: 2 }),
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProviderUnreachableError);
  });
});
