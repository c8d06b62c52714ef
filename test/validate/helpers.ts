import { mkdtempSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Embedder } from "../../src/embed/types.ts";
import type { ChainRecord } from "../../src/store/chain-record.ts";

export const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));

export function tmpDir(prefix: string): string {
  const base = join(REPO_ROOT, "test", ".tmp");
  mkdirSync(base, { recursive: true });
  return mkdtempSync(join(base, prefix + "-"));
}

export function record(id: string, anchor: string, steps: string[], usd = 0.001): ChainRecord {
  return {
    id,
    anchor,
    steps,
    generator: { provider: "fixture", model: "hand-made", steering: "stepwise", prompt: "rewrite", prompt_version: 1 },
    usage: { input_tokens: 100, output_tokens: 50, usd },
  };
}

/**
 * A point on the unit sphere: angle phi from the anchor direction e0, and azimuth psi in the
 * (e1, e2) plane. cos(vec(0,0), vec(phi, psi)) = cos(phi) exactly, and two points at the same
 * azimuth have cosine cos(phi1 − phi2), so chains with known geometry are easy to write down.
 */
export function vec(phi: number, psi = 0, dims = 8): Float32Array {
  const v = new Float32Array(dims);
  v[0] = Math.cos(phi);
  v[1] = Math.sin(phi) * Math.cos(psi);
  v[2] = Math.sin(phi) * Math.sin(psi);
  return v;
}

/** A great-circle walk: anchor at angle 0, step k at angle angles[k-1]·theta. */
export function walk(angles: number[], theta = 0.25, dims = 8): Float32Array[] {
  return [vec(0, 0, dims), ...angles.map((a) => vec(a * theta, 0, dims))];
}

/** Distinct, similar-length sentences (so no length outliers or patterns fire by accident). */
export function sentences(n: number, topic = "harbour"): string[] {
  const words = ["quiet", "busy", "old", "small", "grey", "windy", "famous", "remote", "sunny", "crowded", "muddy", "narrow", "tidal", "rocky", "sandy", "misty"];
  return Array.from({ length: n }, (_, k) => `The ${words[k % words.length]} ${topic} number ${k} sees boats at dawn.`);
}

/**
 * A bag-of-words hashing embedder, used ONLY to exercise streaming and batching mechanics (it
 * has no notion of meaning). It records the size of every call.
 */
export class HashingEmbedder implements Embedder {
  readonly info = { id: "test:hashing-64", backend: "onnx" as const, model: "hashing", dtype: "fp32", pooling: "none" as const, normalize: true, dimensions: 64 };
  readonly calls: number[] = [];
  disposed = false;
  onEmbed: ((texts: string[]) => void) | undefined;
  async embed(texts: string[]): Promise<Float32Array[]> {
    this.calls.push(texts.length);
    this.onEmbed?.(texts);
    return texts.map((t) => {
      const v = new Float32Array(64);
      for (const w of t.toLowerCase().split(/\W+/)) {
        if (!w) continue;
        let h = 2166136261;
        for (let i = 0; i < w.length; i++) h = Math.imul(h ^ w.charCodeAt(i), 16777619);
        v[(h >>> 0) % 64]! += (h & 0x100) ? 1 : -1;
      }
      let n = 0;
      for (const x of v) n += x * x;
      n = Math.sqrt(n) || 1;
      return v.map((x) => x / n);
    });
  }
  async dispose(): Promise<void> {
    this.disposed = true;
  }
}

/** Embeds by looking texts up in a table of hand-made vectors (for end-to-end runs with known geometry). */
export class TableEmbedder implements Embedder {
  readonly info = { id: "test:table", backend: "onnx" as const, model: "table", dtype: "fp32", pooling: "none" as const, normalize: true, dimensions: 8 };
  constructor(private readonly table: Map<string, Float32Array>) {}
  async embed(texts: string[]): Promise<Float32Array[]> {
    return texts.map((t) => {
      const v = this.table.get(t);
      if (!v) throw new Error(`TableEmbedder: no vector for "${t}"`);
      return v;
    });
  }
  async dispose(): Promise<void> {}
}
