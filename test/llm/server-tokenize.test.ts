import { afterAll, describe, expect, it } from "vitest";
import OpenAI from "openai";
import { createOpenAICompatibleModel } from "../../src/llm/openai/openai-compatible-model.ts";
import { conservativeTokenBound } from "../../src/llm/tokens.ts";
import type { ChatMessage } from "../../src/llm/types.ts";
import { startOpenAIServer, type OpenAIServer } from "../servers/index.ts";

const MESSAGES: ChatMessage[] = [
  { role: "system", content: "You rewrite sentences. Keep the meaning; change the wording." },
  { role: "user", content: "Rewrite <sentence>The library opens at nine and closes at five on weekdays.</sentence>" },
];
const servers: OpenAIServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.close();
});

/** What the server bills as prompt tokens for MESSAGES (read from a real completion through the SDK). */
async function billedPrompt(srv: OpenAIServer): Promise<number> {
  const client = new OpenAI({ baseURL: srv.baseURL, apiKey: "x", maxRetries: 0 });
  const r = await client.chat.completions.create({ model: "qwen-loopback", messages: MESSAGES, max_tokens: 20 });
  return r.usage!.prompt_tokens;
}

describe("OpenAI-compatible input counts from the server's tokenize endpoint", () => {
  for (const dialect of ["vllm", "llama.cpp"] as const) {
    it(`${dialect}: detected once, and the count equals what the server bills`, async () => {
      const srv = await startOpenAIServer({ tokenize: dialect });
      servers.push(srv);
      const model = createOpenAICompatibleModel({ model: "qwen-loopback", baseURL: srv.baseURL });
      const c = await model.countInputTokens(MESSAGES);
      expect(c).toMatchObject({ exact: true, quality: "exact" });
      expect(c.tokens).toBe(await billedPrompt(srv));
      // far below the byte bound the ledger used to reserve
      expect(c.tokens).toBeLessThan(conservativeTokenBound(MESSAGES) / 3);
      const probesBefore = srv.requests.filter((r) => r.path !== "/v1/chat/completions").length;
      await model.countInputTokens(MESSAGES);
      const perCount = srv.requests.filter((r) => r.path !== "/v1/chat/completions").length - probesBefore;
      expect(perCount).toBe(dialect === "vllm" ? 1 : 2); // no new detection, only the count itself
    });
  }

  it("llama-cpp-python: /extras/tokenize per message plus a template bound, never below the bill", async () => {
    const srv = await startOpenAIServer({ tokenize: "llama-cpp-python" });
    servers.push(srv);
    const model = createOpenAICompatibleModel({ model: "qwen-loopback", baseURL: srv.baseURL });
    const c = await model.countInputTokens(MESSAGES);
    expect(c).toMatchObject({ exact: false, quality: "bound" });
    expect(srv.requestsTo("/extras/tokenize").length).toBeGreaterThan(0);
    const billed = await billedPrompt(srv);
    expect(c.tokens).toBeGreaterThanOrEqual(billed);
    expect(c.tokens).toBeLessThan(conservativeTokenBound(MESSAGES));
  });

  it("a server without a tokenize endpoint falls back to the byte bound (probed once)", async () => {
    const srv = await startOpenAIServer({});
    servers.push(srv);
    const model = createOpenAICompatibleModel({ model: "qwen-loopback", baseURL: srv.baseURL });
    const c = await model.countInputTokens(MESSAGES);
    expect(c).toMatchObject({ exact: false, quality: "bound", tokens: conservativeTokenBound(MESSAGES) });
    const probes = srv.requests.length;
    await model.countInputTokens(MESSAGES);
    expect(srv.requests.length).toBe(probes);
  });
});
