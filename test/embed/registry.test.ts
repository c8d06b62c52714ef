import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError } from "../../src/errors.ts";
import { cosine, cosineMatrix, dot, EMBEDDER_REGISTRY, l2normalize, poolHiddenStates, resolveEmbedderSpec, isOffline } from "../../src/embed/index.ts";

describe("embedder registry", () => {
  it("is frozen, entries included", () => {
    expect(Object.isFrozen(EMBEDDER_REGISTRY)).toBe(true);
    expect(Object.isFrozen(EMBEDDER_REGISTRY["all-MiniLM-L6-v2"])).toBe(true);
    expect(() => {
      (EMBEDDER_REGISTRY as Record<string, unknown>)["x"] = {};
    }).toThrow(TypeError);
    expect(() => {
      (EMBEDDER_REGISTRY["all-MiniLM-L6-v2"] as { pooling: string }).pooling = "cls";
    }).toThrow(TypeError);
    expect(EMBEDDER_REGISTRY["all-MiniLM-L6-v2"]).toMatchObject({ backend: "onnx", pooling: "mean", normalize: true, dtype: "fp32", dimensions: 384 });
  });
});

describe("resolveEmbedderSpec", () => {
  const env = { RANKCHAIN_CACHE: "/cache-root" };
  it("understands registry names, openai:, paths and hub ids", () => {
    expect(resolveEmbedderSpec(undefined, env)).toEqual({ kind: "registry", name: "all-MiniLM-L6-v2", dir: join("/cache-root", "models", "all-MiniLM-L6-v2") });
    expect(resolveEmbedderSpec("openai:text-embedding-3-large", env)).toEqual({ kind: "openai", model: "text-embedding-3-large" });
    expect(resolveEmbedderSpec("text-embedding-3-small", env)).toEqual({ kind: "openai", model: "text-embedding-3-small" });
    expect(resolveEmbedderSpec("./models/mine", env)).toMatchObject({ kind: "directory" });
    expect(resolveEmbedderSpec("/abs/model", env)).toEqual({ kind: "directory", dir: "/abs/model" });
    expect(resolveEmbedderSpec("BAAI/bge-small-en-v1.5", env)).toEqual({ kind: "hub", id: "BAAI/bge-small-en-v1.5" });
  });
  it("rejects what it cannot place, with the value in the message", () => {
    expect(() => resolveEmbedderSpec("no-such-thing", env)).toThrow(ConfigError);
    expect(() => resolveEmbedderSpec("no-such-thing", env)).toThrow(/no-such-thing/);
    expect(() => resolveEmbedderSpec("openai:", env)).toThrow(/names no model/);
  });
  it("reads the offline switches", () => {
    expect(isOffline({})).toBe(false);
    expect(isOffline({ HF_HUB_OFFLINE: "1" })).toBe(true);
    expect(isOffline({ RANKCHAIN_OFFLINE: "true" })).toBe(true);
    expect(isOffline({ HF_HUB_OFFLINE: "0" })).toBe(false);
  });
});

describe("poolHiddenStates", () => {
  // batch 2, seq 3, hidden 2; row 1 has one padding position holding large values that must be ignored
  const hidden = Float32Array.from([1, 2, 3, 4, 5, 6, /* row 1 */ 2, 0, 4, 2, 100, 100]);
  const mask = [1, 1, 1, 1, 1, 0];
  it("mean ignores padding", () => {
    const [a, b] = poolHiddenStates(hidden, [2, 3, 2], mask, "mean", false);
    expect(Array.from(a!)).toEqual([3, 4]);
    expect(Array.from(b!)).toEqual([3, 1]);
  });
  it("cls takes the first token, max ignores padding, normalize gives unit length", () => {
    expect(Array.from(poolHiddenStates(hidden, [2, 3, 2], mask, "cls", false)[1]!)).toEqual([2, 0]);
    expect(Array.from(poolHiddenStates(hidden, [2, 3, 2], mask, "max", false)[1]!)).toEqual([4, 2]);
    const [n] = poolHiddenStates(hidden, [2, 3, 2], mask, "mean", true);
    expect(n![0]).toBeCloseTo(0.6, 6);
    expect(n![1]).toBeCloseTo(0.8, 6);
  });
});

describe("similarity helpers", () => {
  it("cosine, dot and l2normalize agree", () => {
    const a = [3, 4, 0];
    const b = [4, 3, 0];
    expect(cosine(a, b)).toBeCloseTo(24 / 25, 12);
    expect(dot(l2normalize(a), l2normalize(b))).toBeCloseTo(24 / 25, 6);
    expect(cosine([0, 0], [1, 0])).toBe(0);
    expect(() => dot([1], [1, 2])).toThrow(/dimension/);
    const m = cosineMatrix([a, b], [a, b, [0, 0, 1]]);
    expect(m[0]).toBeCloseTo(1, 12);
    expect(m[1]).toBeCloseTo(24 / 25, 12);
    expect(m[5]).toBeCloseTo(0, 12);
  });
});
