import { spawn } from "node:child_process";
import { join } from "node:path";
import { writeFileSync, readFileSync, existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startOpenAIServer, type OpenAIServer } from "../servers/index.ts";
import { allFileText, readJsonlFile, SEEDS, tmpDir, writeSeeds } from "../generate/helpers.ts";
import { PROJECT_ROOT } from "../../src/config/paths.ts";

const KEY = "sk-cli-test-abcdefghijklmnopqrstuvwxyz0123";
let server: OpenAIServer;
beforeAll(async () => {
  server = await startOpenAIServer({ apiKey: KEY });
});
afterAll(async () => server.close());

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(args: string[], opts: { env?: Record<string, string | undefined>; onSpawn?: (kill: (sig: NodeJS.Signals) => void) => void; cwd?: string } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const env: Record<string, string | undefined> = { ...process.env, ONNXRUNTIME_NODE_INSTALL: "skip", ...opts.env };
    for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];
    const child = spawn(process.execPath, [join(PROJECT_ROOT, "bin/rankchain.js"), ...args], { env, stdio: ["ignore", "pipe", "pipe"], cwd: opts.cwd ?? PROJECT_ROOT });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    opts.onSpawn?.((sig) => child.kill(sig));
    child.on("exit", (code) => resolve({ code, stdout, stderr }));
  });
}

const hosted = (input: string, out: string) => ["generate", "--input", input, "--out", out, "--provider", "openai", "--model", "gpt-4o-mini", "--base-url", server.baseURL, "--steps", "2", "--quiet"];

describe("rankchain generate (CLI)", () => {
  it("--help lists every flag", async () => {
    const r = await cli(["generate", "--help"]);
    expect(r.code).toBe(0);
    for (const flag of ["--input", "--out", "--provider", "--model", "--base-url", "--steps", "--steering", "--guidance", "--concurrency", "--max-usd", "--price-input", "--price-output", "--max-output-tokens", "--temperature", "--seed", "--limit", "--cfg-top-k", "--resume", "--quiet", "--timeout", "--max-retries", "--prices", "--gpu"]) {
      expect(r.stdout).toContain(flag);
    }
  });

  it("runs end to end and prints a JSON summary; the key is never printed or written", async () => {
    const dir = tmpDir();
    const out = join(dir, "run");
    const r = await cli(hosted(writeSeeds(dir, SEEDS.slice(0, 3)), out), { env: { OPENAI_API_KEY: KEY } });
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout.trim().split("\n").pop()!);
    expect(summary).toMatchObject({ status: "completed", chains: 3 });
    expect(r.stdout + r.stderr).not.toContain(KEY);
    expect(allFileText(out)).not.toContain(KEY);
  });

  it.each([
    ["invalid UTF-8", Buffer.from([0x4f, 0x6b, 0x0a, 0xc3, 0x28, 0x0a]), /seeds\.txt:2: invalid UTF-8/],
    ["an over-long line", Buffer.from("ok\n" + "y".repeat(3000) + "\n"), /seeds\.txt:2: seed is 3000 characters long/],
    ["no seeds", Buffer.from("\n\n"), /no seeds/],
  ])("exit 2 on %s, naming file:line, writing nothing", async (_name, content, pattern) => {
    const dir = tmpDir();
    const input = join(dir, "seeds.txt");
    writeFileSync(input, content);
    const r = await cli(hosted(input, join(dir, "run")), { env: { OPENAI_API_KEY: KEY } });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(pattern);
    expect(existsSync(join(dir, "run", "ledger.jsonl"))).toBe(false);
  });

  it("exit 2 naming the variable when the key is missing", async () => {
    const dir = tmpDir();
    const r = await cli(hosted(writeSeeds(dir, SEEDS.slice(0, 1)), join(dir, "run")), { env: { OPENAI_API_KEY: undefined }, cwd: dir });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/OPENAI_API_KEY/);
  });

  it("exit 2 on bad flag values, naming the flag", async () => {
    const dir = tmpDir();
    const input = writeSeeds(dir, SEEDS.slice(0, 1));
    const a = await cli([...hosted(input, join(dir, "a")), "--steps", "zero"]);
    expect(a.code).toBe(2);
    expect(a.stderr).toMatch(/--steps expects an integer/);
    const b = await cli(["generate", "--input", input, "--out", join(dir, "b"), "--provider", "openai", "--model", "gpt-4o-mini", "--steering", "cfg"], { env: { OPENAI_API_KEY: KEY } });
    expect(b.code).toBe(2);
    expect(b.stderr).toMatch(/--steering: .*cfg needs next-token log-probabilities/);
    expect(JSON.parse(b.stdout.trim().split("\n").pop()!)).toMatchObject({ status: "bad_input", exit_code: 2, usd: null, reason: expect.stringMatching(/cfg/) });
    const c = await cli(["generate", "--input", input, "--out", join(dir, "c"), "--provider", "openai-compatible", "--model", "x", "--base-url", server.baseURL, "--max-usd", "1"]);
    expect(c.code).toBe(2);
    expect(c.stderr).toMatch(/no price/);
  });

  it("exit 3 at the cap with everything paid for saved; --resume with a larger cap finishes", async () => {
    const dir = tmpDir();
    const out = join(dir, "run");
    const input = writeSeeds(dir, SEEDS);
    const r = await cli([...hosted(input, out), "--max-usd", "0.0004", "--concurrency", "2"], { env: { OPENAI_API_KEY: KEY } });
    expect(r.code, r.stderr).toBe(3);
    expect(r.stderr).toMatch(/budget cap .* reached.*--resume/);
    // the JSON summary prints at exit 3 too: status, counts, spend, reason
    const line = JSON.parse(r.stdout.trim().split("\n").pop()!);
    expect(line).toMatchObject({ status: "budget_reached", exit_code: 3, cap_usd: 0.0004, reason: expect.stringMatching(/budget cap/) });
    expect(line.usd).toBeLessThanOrEqual(0.0004);
    expect(line.by_stage.generate.calls).toBe(line.calls);
    const saved = readJsonlFile(join(out, "chains.jsonl")).length;
    expect(saved).toBeGreaterThan(0);
    expect(saved).toBeLessThan(SEEDS.length);
    const run = JSON.parse(readFileSync(join(out, "run.json"), "utf8"));
    expect(run.status).toBe("budget_reached");
    expect(run.totals.usd).toBeLessThanOrEqual(0.0004);
    const r2 = await cli([...hosted(input, out), "--max-usd", "1", "--resume"], { env: { OPENAI_API_KEY: KEY } });
    expect(r2.code, r2.stderr).toBe(0);
    expect(readJsonlFile(join(out, "chains.jsonl"))).toHaveLength(SEEDS.length);
  });

  it("exit 1 (every attempt refused) still prints the JSON summary with the reason, and charges nothing", async () => {
    const dir = tmpDir();
    const out = join(dir, "run");
    const dead = await startOpenAIServer({});
    const url = dead.baseURL;
    await dead.close();
    const r = await cli(["generate", "--input", writeSeeds(dir, SEEDS.slice(0, 2)), "--out", out, "--provider", "openai-compatible", "--model", "m", "--base-url", url, "--steps", "2", "--max-retries", "0", "--quiet", "--price-input", "1", "--price-output", "1", "--max-usd", "1"]);
    expect(r.code, r.stderr).toBe(1);
    const line = JSON.parse(r.stdout.trim().split("\n").pop()!);
    expect(line).toMatchObject({ exit_code: 1, chains: 0, usd: 0, calls: 0, reason: expect.stringMatching(/failed/) });
  });

  it("SIGINT finishes calls in flight and leaves no unsettled reservation", async () => {
    const dir = tmpDir();
    const out = join(dir, "run");
    server.setResponder((_req, ctx) => ({ ...ctx.defaultReply(), delayMs: 150 }) as ReturnType<typeof ctx.defaultReply>);
    server.clearRequests();
    try {
      const r = await cli([...hosted(writeSeeds(dir, SEEDS), out), "--concurrency", "2", "--steps", "4"], {
        env: { OPENAI_API_KEY: KEY },
        onSpawn: (kill) => {
          const t = setInterval(() => {
            if (server.requests.length >= 3) {
              clearInterval(t);
              kill("SIGINT");
            }
          }, 10);
        },
      });
      expect(r.code).toBe(130);
      expect(r.stderr).toMatch(/SIGINT: finishing calls in flight/);
      const ledger = readJsonlFile<{ type: string; id: string }>(join(out, "ledger.jsonl"));
      const reserved = new Set(ledger.filter((e) => e.type === "reserve").map((e) => e.id));
      const settled = new Set(ledger.filter((e) => e.type !== "reserve").map((e) => e.id));
      expect([...reserved].filter((id) => !settled.has(id))).toEqual([]);
      expect(JSON.parse(readFileSync(join(out, "run.json"), "utf8")).status).toBe("interrupted");
    } finally {
      server.setResponder(undefined);
    }
  });
});

describe("rankchain estimate", () => {
  it("prints a typical cost and a worst-case bound and spends nothing", async () => {
    const dir = tmpDir();
    server.clearRequests();
    const r = await cli(["estimate", "--input", writeSeeds(dir, SEEDS), "--provider", "openai", "--model", "gpt-4o-mini", "--steps", "4", "--json"], { env: { OPENAI_API_KEY: undefined } });
    expect(r.code, r.stderr).toBe(0);
    const est = JSON.parse(r.stdout);
    expect(est.seeds).toBe(SEEDS.length);
    expect(est.calls).toEqual({ typical: SEEDS.length * 4, worst: SEEDS.length * 4 * 3 }); // 2 step retries by default
    expect(est.usd.typical).toBeGreaterThan(0);
    expect(est.usd.worst).toBeGreaterThan(est.usd.typical);
    expect(est.method.worst).toMatch(/^bound/);
    expect(server.requests).toHaveLength(0);
  });

  it("--mode batch prices the run at the batch API's half price, and refuses a provider without one", async () => {
    const dir = tmpDir();
    const input = writeSeeds(dir, SEEDS);
    const args = ["estimate", "--input", input, "--provider", "openai", "--model", "gpt-4o-mini", "--steps", "4", "--json"];
    const online = JSON.parse((await cli(args)).stdout);
    const r = await cli([...args, "--mode", "batch"]);
    expect(r.code, r.stderr).toBe(0);
    const batch = JSON.parse(r.stdout);
    expect(batch.mode).toBe("batch");
    expect(batch.list_price).toEqual(online.price);
    expect(batch.inputTokens).toEqual(online.inputTokens);
    expect(batch.usd.typical).toBeCloseTo(online.usd.typical / 2, 10);
    expect(batch.usd.worst).toBeCloseTo(online.usd.worst / 2, 10);
    const text = await cli(["estimate", "--input", input, "--provider", "openai", "--model", "gpt-4o-mini", "--steps", "4", "--mode", "batch"]);
    expect(text.stdout).toMatch(/batch API: half of \$/);
    const bad = await cli(["estimate", "--input", input, "--provider", "openai-compatible", "--model", "qwen2.5-7b", "--price-input", "1", "--price-output", "1", "--mode", "batch"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/mode/);
  });

  it("needs no --base-url for an openai-compatible model (it never contacts a server)", async () => {
    const dir = tmpDir();
    const r = await cli(["estimate", "--input", writeSeeds(dir, SEEDS), "--provider", "openai-compatible", "--model", "qwen2.5-7b", "--price-input", "1", "--price-output", "2", "--max-usd", "0.01", "--json"], {
      env: { OPENAI_BASE_URL: undefined },
    });
    expect(r.code, r.stderr).toBe(0);
    const est = JSON.parse(r.stdout);
    expect(est.usd.worst).toBeGreaterThan(est.usd.typical);
    expect(est.seeds_fitting_cap.guaranteed).toBeLessThanOrEqual(est.seeds_fitting_cap.typical);
  });

  it("the worst case bounds what a real run is charged, and the typical figure is close to it", async () => {
    const dir = tmpDir();
    const input = writeSeeds(dir, SEEDS.slice(0, 4));
    const est = JSON.parse((await cli(["estimate", "--input", input, "--provider", "openai", "--model", "gpt-4o-mini", "--steps", "3", "--json"])).stdout);
    const out = join(dir, "run");
    const r = await cli(["generate", "--input", input, "--out", out, "--provider", "openai", "--model", "gpt-4o-mini", "--base-url", server.baseURL, "--steps", "3", "--quiet"], { env: { OPENAI_API_KEY: KEY } });
    expect(r.code, r.stderr).toBe(0);
    const usd = JSON.parse(readFileSync(join(out, "run.json"), "utf8")).totals.usd;
    expect(usd).toBeLessThanOrEqual(est.usd.worst);
    expect(usd).toBeGreaterThan(0);
    expect(Math.abs(est.usd.typical - usd) / usd).toBeLessThan(0.35);
  });
});
