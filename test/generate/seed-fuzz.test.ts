/**
 * Issue 13: bad input is stopped before anything is loaded or spent. Seeds with control
 * characters, a BOM inside the file, lone surrogates, huge lines or bad JSONL exit 2 naming
 * file:line; a fuzzed seed file always ends in a clean run or a ConfigError (exit 2) — never a
 * crash, and never a paid call when the input is bad.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readSeeds, seedTextProblem } from "../../src/generate/seeds.ts";
import { runGenerate } from "../../src/generate/run.ts";
import { ConfigError } from "../../src/errors.ts";
import { exitCodeFor, EXIT } from "../../src/cli/exit-codes.ts";
import { PROJECT_ROOT } from "../../src/config/paths.ts";
import { startOpenAIServer, type OpenAIServer } from "../servers/index.ts";
import { config } from "./helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "rankchain-seedfuzz-"));
let n = 0;
function file(content: string | Uint8Array, ext = "txt"): string {
  const p = join(dir, `s${n++}.${ext}`);
  writeFileSync(p, content);
  return p;
}

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error("expected a ConfigError");
}

let server: OpenAIServer;
beforeAll(async () => {
  server = await startOpenAIServer();
});
afterAll(async () => server.close());

describe("seed checks name file:line", () => {
  it.each([
    ["a NUL byte", "Good seed.\nBad\u0000seed.\n", /:2: NUL byte U\+0000 at column 4/],
    ["a bell character", "Ring\u0007 the bell.\n", /:1: control character U\+0007 at column 5/],
    ["a lone carriage return", "One\rtwo.\n", /:1: carriage return without a line feed U\+000D/],
    ["DEL", "Delete\u007f me.\n", /:1: control character U\+007F/],
    ["a C1 control", "Next\u0085line.\n", /:1: control character U\+0085/],
    ["a line separator", "Line\u2028separator.\n", /:1: control character U\+2028/],
    ["a BOM inside the file", "First.\n\uFEFFSecond.\n", /:2: byte order mark \(U\+FEFF\) inside the file/],
  ])("rejects %s", (_name, content, pattern) => {
    const p = file(content);
    const e = configError(() => readSeeds(p));
    expect(e.message.startsWith(p)).toBe(true);
    expect(e.message).toMatch(pattern);
  });

  it("accepts a BOM at the start and CRLF line ends, and tabs inside a seed", () => {
    const r = readSeeds(file("\uFEFFFirst seed.\r\nSecond\tseed.\r\n"));
    expect(r.seeds.map((s) => s.text)).toEqual(["First seed.", "Second\tseed."]);
  });

  it("JSONL: lone surrogates and control characters from escapes name the field", () => {
    const lone = file('{"text": "ok"}\n{"text": "bad \\ud800 here"}\n', "jsonl");
    expect(configError(() => readSeeds(lone)).message).toMatch(/:2 \(field "text"\): lone surrogate U\+D800 at column 5/);
    const nul = file('{"text": "nul \\u0000 here"}\n', "jsonl");
    expect(configError(() => readSeeds(nul)).message).toMatch(/:1 \(field "text"\): NUL byte/);
    const pair = readSeeds(file('{"text": "emoji \\ud83d\\ude00 ok"}\n', "jsonl"));
    expect(pair.seeds[0]!.text).toBe("emoji 😀 ok");
    const notObject = file('{"text": "ok"}\n[1, 2]\n', "jsonl");
    expect(configError(() => readSeeds(notObject)).message).toMatch(/:2 \(field "text"\): expected a string/);
    const badJson = file('{"text": "ok"}\n{"text": "unterminated\n', "jsonl");
    expect(configError(() => readSeeds(badJson)).message).toMatch(/:2: invalid JSON/);
  });

  it("a huge line is rejected by length, not read into a prompt", () => {
    const p = file("ok\n" + "x".repeat(5_000_000) + "\n");
    expect(configError(() => readSeeds(p)).message).toMatch(/:2: seed is 5000000 characters long; the limit is 2000/);
  });

  it("property: any bytes → seeds that pass every check, or a ConfigError naming the file", () => {
    const chunk = fc.oneof(
      fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b)),
      fc.string({ maxLength: 30 }).map((s) => Buffer.from(s, "utf8")),
      fc.constantFrom(..."\u0000\u0007\r\n\t\u007f\u0085\u2028\uFEFF{}\"\\".split("").map((c) => Buffer.from(c, "utf8"))),
      fc.constantFrom(Buffer.from('{"text": "a\\ud800"}\n'), Buffer.from('{"text": 1}\n'), Buffer.from([0xc3, 0x28]), Buffer.from([0xed, 0xa0, 0x80])),
    );
    fc.assert(
      fc.property(fc.array(chunk, { maxLength: 12 }), fc.boolean(), (chunks, jsonl) => {
        const p = file(Buffer.concat(chunks), jsonl ? "jsonl" : "txt");
        try {
          const r = readSeeds(p, { maxChars: 50 });
          for (const s of r.seeds) {
            expect(seedTextProblem(s.text)).toBeUndefined();
            expect([...s.text].length).toBeLessThanOrEqual(50);
            expect(s.text.trim()).toBe(s.text);
            expect(s.text).not.toBe("");
          }
        } catch (e) {
          expect(e).toBeInstanceOf(ConfigError);
          expect((e as Error).message.startsWith(p)).toBe(true);
          expect(exitCodeFor(e)).toBe(EXIT.usage);
        }
      }),
      { numRuns: 400 },
    );
  });

  it("property: a fuzzed seed file through generate — bad input costs no call and writes no ledger", async () => {
    const bad = fc.oneof(
      fc.constantFrom("\u0000", "\u0007", "\r", "\u2028", "\uFEFF", "\u0085"),
      fc.string({ minLength: 60, maxLength: 80 }).map((s) => s.replace(/[\n]/g, "y") + "z".repeat(60)),
    );
    const good = fc.constantFrom("A dog runs in the park.", "The train left early.", "Rain fell all night.");
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(good, fc.option(bad, { nil: undefined })), { minLength: 1, maxLength: 4 }), async (lines) => {
        server.clearRequests();
        const runDir = mkdtempSync(join(dir, "run-"));
        const input = file(lines.map(([g, b]) => (b === undefined ? g : g.slice(0, 5) + b + g.slice(5))).join("\n") + "\n");
        const isBad = lines.some(([, b]) => b !== undefined);
        try {
          const summary = await runGenerate(
            config({ input, out: join(runDir, "out"), provider: "openai-compatible", model: "m", baseUrl: server.baseURL, steps: 1, maxSeedChars: 50, minSteps: 1 }),
          );
          expect(isBad).toBe(false);
          expect(summary.status).toBe("completed");
        } catch (e) {
          expect(e).toBeInstanceOf(ConfigError);
          expect(isBad).toBe(true);
          expect(server.requestsTo("/v1/chat/completions")).toHaveLength(0);
          expect(existsSync(join(runDir, "out", "ledger.jsonl"))).toBe(false);
        }
      }),
      { numRuns: 25 },
    );
  });
});

describe("flag ranges are checked before anything is loaded (CLI)", () => {
  function cli(args: string[]): Promise<{ code: number | null; stderr: string }> {
    return new Promise((resolve) => {
      const child = spawn(process.execPath, [join(PROJECT_ROOT, "bin/rankchain.js"), ...args], {
        env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: "skip" },
        stdio: ["ignore", "ignore", "pipe"],
        cwd: dir,
      });
      let stderr = "";
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      child.on("exit", (code) => resolve({ code, stderr }));
    });
  }

  it("fuzzed seed files through the CLI end in exit 0 or 2, and a bad one costs no call", async () => {
    const samples = fc.sample(
      fc.array(fc.oneof(fc.uint8Array({ maxLength: 30 }).map((b) => Buffer.from(b)), fc.constantFrom(Buffer.from("A calm sea.\n"), Buffer.from("\u0000"), Buffer.from("\ufeff"), Buffer.from("x".repeat(3000)))), { minLength: 1, maxLength: 6 }),
      { numRuns: 4, seed: 13 },
    );
    for (const [i, chunks] of samples.entries()) {
      const input = file(Buffer.concat([...chunks, Buffer.from("\nA calm sea.\n")]));
      server.clearRequests();
      const out = join(dir, `cli-fuzz-${i}`);
      const r = await cli(["generate", "--input", input, "--out", out, "--provider", "openai-compatible", "--model", "m", "--base-url", server.baseURL, "--steps", "1", "--min-steps", "1", "--quiet"]);
      expect([0, 2]).toContain(r.code);
      if (r.code === 2) {
        expect(r.stderr).toContain(input);
        expect(server.requestsTo("/v1/chat/completions")).toHaveLength(0);
      }
    }
  });

  it("--guidance 0.5 with cfg, --min-steps above --steps, a NUL seed: exit 2 naming the flag or file:line, no run dir", async () => {
    const seeds = file("A dog runs.\n");
    const g = await cli(["generate", "--input", seeds, "--out", join(dir, "g1"), "--steering", "cfg", "--guidance", "0.5"]);
    expect(g.code).toBe(2);
    expect(g.stderr).toMatch(/--guidance expects a number >= 1/);
    expect(existsSync(join(dir, "g1"))).toBe(false);
    const m = await cli(["generate", "--input", seeds, "--out", join(dir, "g2"), "--steps", "2", "--min-steps", "3"]);
    expect(m.code).toBe(2);
    expect(m.stderr).toMatch(/--min-steps: must be at most --steps \(2\)/);
    const nul = file("A dog\u0000 runs.\n");
    const s = await cli(["generate", "--input", nul, "--out", join(dir, "g3")]);
    expect(s.code).toBe(2);
    expect(s.stderr).toContain(`${nul}:1: NUL byte U+0000`);
    expect(existsSync(join(dir, "g3"))).toBe(false);
    const e = await cli(["estimate", "--input", nul, "--provider", "openai", "--model", "gpt-4o-mini"]);
    expect(e.code).toBe(2);
    expect(e.stderr).toContain(`${nul}:1: NUL byte`);
  });
});
