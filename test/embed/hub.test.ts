import { createReadStream, existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, normalize } from "node:path";
import { env as hfEnv } from "@huggingface/transformers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cosine, createEmbedder } from "../../src/embed/index.ts";
import { defaultModelDir } from "./helpers.ts";

/**
 * The hub path (--embedder owner/name) end to end against a loopback server that serves the
 * exported model directory in the hub's URL layout (<host>/<id>/resolve/main/<file>). Nothing
 * reaches the real hub: transformers.js' remoteHost points at 127.0.0.1 for this file only.
 */
const model = defaultModelDir();
if (model.missing) console.warn(`skipping hub-path test: ${model.missing}`);

describe.skipIf(model.missing !== undefined)("hub ids through transformers.js (loopback hub)", () => {
  let server: Server;
  let host: string;
  const served: string[] = [];
  let cache: string;
  const saved = { remoteHost: hfEnv.remoteHost, allowRemoteModels: hfEnv.allowRemoteModels };

  beforeAll(async () => {
    cache = mkdtempSync(join(tmpdir(), "rc-hubcache-"));
    server = createServer((req, res) => {
      const m = /^\/test-owner\/minilm\/resolve\/main\/(.+)$/.exec(decodeURIComponent(req.url ?? ""));
      const rel = m ? normalize(m[1]!) : undefined;
      const file = rel && !rel.startsWith("..") ? join(model.dir, rel) : undefined;
      if (!file || !existsSync(file) || !statSync(file).isFile()) {
        res.writeHead(404).end("Entry not found");
        return;
      }
      served.push(rel!);
      res.writeHead(200, { "content-length": String(statSync(file).size), "content-type": "application/octet-stream" });
      if (req.method === "HEAD") res.end();
      else createReadStream(file).pipe(res);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    host = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    hfEnv.remoteHost = host;
    hfEnv.allowRemoteModels = true;
  });
  afterAll(async () => {
    hfEnv.remoteHost = saved.remoteHost;
    hfEnv.allowRemoteModels = false;
    await new Promise<void>((r) => server.close(() => r()));
    rmSync(cache, { recursive: true, force: true });
  });

  it("downloads into <cache>/hf, reads pooling from the repo's sentence-transformers files, and matches the local model", async () => {
    const env = { RANKCHAIN_CACHE: cache };
    const hub = await createEmbedder("test-owner/minilm", { env, allowRemote: true, batchSize: 4 });
    const local = await createEmbedder(model.dir, { batchSize: 4 });
    try {
      expect(hub.info).toMatchObject({ id: "onnx:test-owner/minilm", pooling: "mean", normalize: true, dimensions: 384, source: "hf:test-owner/minilm" });
      expect(served).toEqual(expect.arrayContaining(["onnx/model.onnx", "tokenizer.json", "1_Pooling/config.json", "modules.json"]));
      expect(existsSync(join(cache, "hf", "test-owner", "minilm", "1_Pooling", "config.json"))).toBe(true);
      const texts = ["A man plays a guitar.", "Hi", "Two dogs run across a snowy field."];
      const [a, b] = [await hub.embed(texts), await local.embed(texts)];
      a.forEach((v, i) => expect(cosine(v, b[i]!)).toBeGreaterThan(0.9999));
    } finally {
      await hub.dispose();
      await local.dispose();
    }
    // offline afterwards: served from the cache, nothing requested
    served.length = 0;
    const offline = await createEmbedder("test-owner/minilm", { env: { ...env, HF_HUB_OFFLINE: "1" } });
    try {
      expect(offline.info.normalize).toBe(true);
      expect((await offline.embed(["x"]))[0]!.length).toBe(384);
      expect(served).toEqual([]);
    } finally {
      await offline.dispose();
    }
  });
});
