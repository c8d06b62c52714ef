import { spawn } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../../src/config/paths.ts";
import { SEEDS, tmpDir, writeSeeds } from "../generate/helpers.ts";

function cli(args: string[], env: Record<string, string | undefined> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const e: Record<string, string | undefined> = { ...process.env, ONNXRUNTIME_NODE_INSTALL: "skip", ...env };
    for (const [k, v] of Object.entries(e)) if (v === undefined) delete e[k];
    const child = spawn(process.execPath, [join(PROJECT_ROOT, "bin/rankchain.js"), ...args], { env: e, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("exit", (code) => resolve({ code, stdout, stderr }));
  });
}

describe("CLI: batch, shards, farms, shared ledger", { timeout: 300_000 }, () => {
  it("generate --help lists the flags; merge and budget have help", async () => {
    const r = await cli(["generate", "--help"]);
    for (const flag of ["--mode", "--poll-seconds", "--shard", "--ledger", "--budget-id"]) expect(r.stdout).toContain(flag);
    expect((await cli(["merge", "--help"])).stdout).toContain("fingerprints must match");
    expect((await cli(["budget", "settle", "--help"])).stdout).toContain("--force");
  });

  it("bad flags exit 2 naming the flag, before anything is spent", async () => {
    const dir = tmpDir();
    const input = writeSeeds(dir, SEEDS.slice(0, 2));
    const base = ["generate", "--input", input, "--out", join(dir, "run"), "--quiet"];
    const cases: Array<[string[], RegExp]> = [
      [["--shard", "3/3"], /--shard: expects i\/n with 0 ≤ i < n/],
      [["--shard", "x"], /--shard: expects i\/n/],
      [["--mode", "batch"], /--mode: batch needs --provider openai or anthropic/],
      [["--provider", "openai", "--model", "gpt-4o-mini", "--base-url", "http://127.0.0.1:1/v1,http://127.0.0.1:2/v1"], /--base-url: several URLs \(a farm\) need --provider openai-compatible/],
      [["--provider", "openai-compatible", "--model", "m", "--base-url", "http://a/v1,ftp://b"], /--base-url: expects http\(s\) URLs/],
      [["--ledger", "mysql://x"], /--ledger: expects a postgres:\/\/ URL/],
    ];
    for (const [extra, msg] of cases) {
      const r = await cli([...base, ...extra], { OPENAI_API_KEY: "sk-test-cli-0123456789abcdefghij" });
      expect(r.code, `${extra.join(" ")}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(msg);
    }
    const m = await cli(["merge", join(dir, "out"), join(dir, "missing")]);
    expect(m.code).toBe(2);
    expect(m.stderr).toMatch(/is not a run directory/);
    const b = await cli(["budget", "show"], { RANKCHAIN_LEDGER: undefined });
    expect(b.code).toBe(2);
    expect(b.stderr).toMatch(/--ledger: expects the shared ledger's postgres:\/\/ URL/);
  });
});
