import { execFileSync } from "node:child_process";
import { closeSync, copyFileSync, mkdirSync, mkdtempSync, openSync, rmSync, truncateSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../../src/config/paths.ts";
import { ConfigError } from "../../src/errors.ts";
import {
  DEFAULT_MODEL_NAME,
  defaultModelEntry,
  listModels,
  ModelChecksumError,
  pullModel,
  resolveModelPath,
  verifyModelFile,
} from "../../src/models/index.ts";

let installed: string;
let scratch: string;

beforeAll(async () => {
  installed = (await pullModel()).path;
  scratch = mkdtempSync(join(tmpdir(), "rankchain-models-"));
}, 300_000);

afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

describe("model registry checksums", () => {
  it("the pulled default verifies", async () => {
    await expect(verifyModelFile(installed, defaultModelEntry())).resolves.toBeUndefined();
  });

  it("a corrupted file (one byte changed, same size) fails verification", async () => {
    const copy = join(scratch, "corrupt.gguf");
    copyFileSync(installed, copy);
    const fd = openSync(copy, "r+");
    writeSync(fd, Buffer.from([0x5a]), 0, 1, 50_000_000);
    closeSync(fd);
    const err = await verifyModelFile(copy, defaultModelEntry()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelChecksumError);
    expect((err as ModelChecksumError).expectedSha256).toBe(defaultModelEntry().sha256);
    expect((err as ModelChecksumError).actualSha256).toMatch(/^[0-9a-f]{64}$/);
    expect((err as ModelChecksumError).actualSha256).not.toBe(defaultModelEntry().sha256);
  });

  it("a truncated file fails verification", async () => {
    const copy = join(scratch, "short.gguf");
    copyFileSync(installed, copy);
    truncateSync(copy, 1000);
    await expect(verifyModelFile(copy, defaultModelEntry())).rejects.toThrow(ModelChecksumError);
  });
});

describe("resolving and listing models", () => {
  it("resolves registry names, paths and hf: refs; missing ones say how to pull", () => {
    const env = { ...process.env };
    expect(resolveModelPath("default", env)).toEqual({ kind: "file", path: installed, entry: defaultModelEntry() });
    expect(resolveModelPath(installed, env)).toMatchObject({ kind: "file", path: installed });
    expect(resolveModelPath("hf:someone/model-GGUF/model.Q4_K_M.gguf", env)).toEqual({ kind: "remote", uri: "hf:someone/model-GGUF/model.Q4_K_M.gguf" });
    const empty = { ...process.env, RANKCHAIN_CACHE: join(scratch, "empty-cache") };
    expect(() => resolveModelPath(DEFAULT_MODEL_NAME, empty)).toThrow(ConfigError);
    expect(() => resolveModelPath(DEFAULT_MODEL_NAME, empty)).toThrow(/`rankchain models pull`/);
    expect(() => resolveModelPath("gemma3-270m", empty)).toThrow(/rankchain models pull gemma3-270m/);
    expect(() => resolveModelPath("./no/such/model.gguf", empty)).toThrow(/rankchain models pull/);
  });

  it("lists registry files (default marked), other model directories, and skips partial downloads", () => {
    const cache = join(scratch, "cache");
    const dir = join(cache, "models");
    mkdirSync(join(dir, "all-MiniLM-L6-v2"), { recursive: true });
    writeFileSync(join(dir, "all-MiniLM-L6-v2", "model.onnx"), Buffer.alloc(1234));
    writeFileSync(join(dir, defaultModelEntry().file), Buffer.alloc(10));
    writeFileSync(join(dir, "other.gguf"), Buffer.alloc(20));
    writeFileSync(join(dir, `.${defaultModelEntry().file}.partial-1`), Buffer.alloc(5));
    const env = { ...process.env, RANKCHAIN_CACHE: cache };
    const list = listModels(env);
    expect(list.map((m) => [m.name, m.kind, m.isDefault, m.sizeBytes])).toEqual([
      ["smollm2-135m-instruct", "gguf", true, 10],
      ["all-MiniLM-L6-v2", "directory", false, 1234],
      ["other.gguf", "gguf", false, 20],
    ]);
    const out = execFileSync(process.execPath, [join(PROJECT_ROOT, "bin", "rankchain.js"), "models", "list"], { env, encoding: "utf8" });
    expect(out).toMatch(/^\* smollm2-135m-instruct/m);
    expect(out).toMatch(/^ {2}all-MiniLM-L6-v2/m);
    expect(out).toMatch(/available to pull[\s\S]*gemma3-270m/);
  }, 60_000);
});
