import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { record, REPO_ROOT, tmpDir } from "../validate/helpers.ts";

function rankchain(args: string[]) {
  return spawnSync(process.execPath, [join(REPO_ROOT, "bin", "rankchain.js"), ...args], {
    encoding: "utf8",
    env: { ...process.env, HF_HUB_OFFLINE: "1", ONNXRUNTIME_NODE_INSTALL: "skip" },
  });
}

describe("validate --judge usage errors (exit 2, naming the flag)", () => {
  const dir = tmpDir("judge-cli");
  writeFileSync(join(dir, "chains.jsonl"), JSON.stringify(record("a", "An anchor sentence.", ["one", "two", "three"])) + "\n");
  it("an unknown judge", () => {
    const r = rankchain(["validate", dir, "--judge", "oracle"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--judge expects one of embedder, cross-encoder, llm, cascade/);
  }, 60_000);
  it("cascade without a cross-encoder, before anything is embedded", () => {
    const r = rankchain(["validate", dir, "--judge", "cascade"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--judge cascade needs --cross-encoder/);
  }, 60_000);
  it("a hosted LLM judge without a model", () => {
    const r = rankchain(["validate", dir, "--judge", "llm", "--judge-provider", "openai"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/needs --judge-model/);
  }, 60_000);
});
