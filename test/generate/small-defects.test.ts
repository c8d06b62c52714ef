/**
 * Issue 13, smaller defects: credentials in a base URL never reach run.json, errors or
 * validation.json; failure messages are not cut mid-path; the OpenAI embedder accepts
 * special-token text; the exit-code map has code 4.
 */
import { join } from "node:path";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { redactSecrets, redactUrl } from "../../src/config/env.ts";
import { joinUrl, toProviderCallError } from "../../src/llm/errors.ts";
import { shortenMessage } from "../../src/generate/generator.ts";
import { runGenerate } from "../../src/generate/run.ts";
import { createOpenAICompatibleModel } from "../../src/llm/openai/index.ts";
import { ConfigError } from "../../src/errors.ts";
import { countEmbeddingTokens, OpenAIEmbedder } from "../../src/embed/openai-embedder.ts";
import { startOpenAIServer, type OpenAIServer } from "../servers/index.ts";
import { allFileText, config, SEEDS, tmpDir, writeSeeds } from "./helpers.ts";

let server: OpenAIServer;
beforeAll(async () => {
  server = await startOpenAIServer();
});
afterAll(async () => server.close());

describe("credentials in URLs (issue 13)", () => {
  it("redactUrl removes user-info and credential query values, keeps the rest", () => {
    expect(redactUrl("https://user:tok3n@host.example/v1")).toBe("https://[redacted]@host.example/v1");
    expect(redactUrl("https://tok3n@host.example/v1")).toBe("https://[redacted]@host.example/v1");
    expect(redactUrl("https://host/v1?key=abc123&api-version=2024-06-01")).toBe("https://host/v1?key=[redacted]&api-version=2024-06-01");
    expect(redactUrl("https://host/v1?api_key=a&access_token=b&sig=c")).toBe("https://host/v1?api_key=[redacted]&access_token=[redacted]&sig=[redacted]");
    expect(redactUrl("http://127.0.0.1:8080/v1")).toBe("http://127.0.0.1:8080/v1");
    expect(redactSecrets("calling https://u:p4ss@h/v1/chat?token=xyz failed")).toBe("calling https://[redacted]@h/v1/chat?token=[redacted] failed");
    expect(joinUrl("https://u:p4ss@h/v1?key=k", "/chat/completions")).toBe("https://[redacted]@h/v1/chat/completions?key=[redacted]");
  });

  it("a ?key= base URL works (the query goes on every request) and is stored redacted; user:password@ is refused with exit 2", async () => {
    const u = new URL(server.baseURL);
    const withKey = `http://${u.host}${u.pathname}?key=qwerty-123`;
    const dir = tmpDir();
    const out = join(dir, "run");
    server.clearRequests();
    await runGenerate(config({ input: writeSeeds(dir, SEEDS.slice(0, 1)), out, provider: "openai-compatible", model: "m", baseUrl: withKey, steps: 1, minSteps: 1 }));
    const req = server.requestsTo("/v1/chat/completions")[0]!;
    expect(req.query).toBe("key=qwerty-123");
    const text = allFileText(out);
    expect(text).not.toContain("qwerty-123");
    expect(JSON.parse(readFileSync(join(out, "run.json"), "utf8")).config.baseUrl).toBe(`http://${u.host}${u.pathname}?key=[redacted]`);

    // Node's fetch refuses URLs with user-info: exit 2 before anything, the secret not echoed
    const withCreds = `http://alice:s3cr3t-t0ken@${u.host}${u.pathname}`;
    const bad = (() => {
      try {
        config({ input: "x", out: join(dir, "run2"), provider: "openai-compatible", model: "m", baseUrl: withCreds });
      } catch (e) {
        return e as Error;
      }
      return undefined;
    })();
    expect(bad?.message).toMatch(/holds credentials/);
    expect(bad?.message).not.toContain("s3cr3t-t0ken");
    expect(() => createOpenAICompatibleModel({ model: "m", baseURL: withCreds })).toThrow(ConfigError);
    expect(() => createOpenAICompatibleModel({ model: "m", baseURL: withCreds })).toThrow(/http:\/\/\[redacted\]@/);

    const dead = `http://bob:hunter2-secret@127.0.0.1:1/v1`;
    const err = toProviderCallError(new Error("connect ECONNREFUSED"), { url: joinUrl(dead, "/chat/completions"), provider: "openai-compatible" });
    expect(err.message).not.toContain("hunter2-secret");
    expect((err as { url?: string }).url).not.toContain("hunter2-secret");
  });

  it("the OpenAI embedder: ?key= sent on every request and recorded redacted; user:password@ refused", async () => {
    const e = new OpenAIEmbedder({ model: "text-embedding-3-small", apiKey: "sk-test-embedder-key-0123456789", baseURL: `${server.baseURL}?key=zzz-secret` });
    expect(e.info.source).not.toContain("zzz-secret");
    server.clearRequests();
    await e.embed(["a sentence"]);
    expect(server.requestsTo("/v1/embeddings")[0]!.query).toBe("key=zzz-secret");
    await e.dispose();
    expect(() => new OpenAIEmbedder({ model: "text-embedding-3-small", apiKey: "sk-test-embedder-key-0123456789", baseURL: "https://u:p4ssw0rd@emb.example/v1" })).toThrow(/holds credentials/);
  });
});

describe("messages and special tokens (issue 13)", () => {
  it("shortenMessage cuts at a word boundary, never mid-path", () => {
    const msg = "openai-compatible: connection error calling http://127.0.0.1:8080/v1/chat/completions: " + "connect ECONNREFUSED ".repeat(40);
    const short = shortenMessage(msg, 120);
    expect(short.length).toBeLessThanOrEqual(122);
    expect(short).toContain("http://127.0.0.1:8080/v1/chat/completions:");
    expect(short.endsWith(" …")).toBe(true);
    expect(shortenMessage("short", 120)).toBe("short");
  });

  it("the OpenAI embedder counts and embeds special-token text such as <|endoftext|>", async () => {
    expect(countEmbeddingTokens("a <|endoftext|> b")).toBeGreaterThan(3);
    const e = new OpenAIEmbedder({ model: "text-embedding-3-small", apiKey: "sk-test-embedder-key-0123456789", baseURL: server.baseURL });
    const v = await e.embed(["<|endoftext|>", "<|im_start|>user hi"]);
    expect(v).toHaveLength(2);
    expect(v[0]!.length).toBeGreaterThan(0);
    await e.dispose();
  });
});
