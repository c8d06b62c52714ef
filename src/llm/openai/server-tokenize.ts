/**
 * Exact input counts from an OpenAI-compatible server's own tokenizer, feature-detected once per
 * model instance (so once per run):
 *
 * - vLLM:             POST {root}/tokenize {model, messages, add_generation_prompt: true} → {count}
 *                     (the chat template applied: exact)
 * - llama.cpp server: POST {root}/apply-template {messages} → {prompt}, then
 *                     POST {root}/tokenize {content: prompt, add_special: true} → {tokens} (exact)
 * - llama-cpp-python: POST {root}/extras/tokenize {input} → {tokens}, per message content; the chat
 *                     template is not exposed, so its share is bounded (+16 per message + 64): a bound.
 *
 * {root} is the base URL without a trailing /v1. Anything else (OpenAI-compatible servers without
 * such an endpoint, errors, timeouts) → undefined, and the caller uses the byte bound. These servers
 * apply a JSON schema as a grammar, not as prompt text, so a response format adds nothing here.
 */
import { BOUND_BASE_TOKENS, BOUND_TOKENS_PER_MESSAGE } from "../tokens.ts";
import type { ChatMessage, TokenCount } from "../types.ts";

export type TokenizeDialect = "vllm" | "llama.cpp" | "llama-cpp-python";

const PROBE: ChatMessage[] = [
  { role: "system", content: "probe" },
  { role: "user", content: "Count these tokens." },
];

export class ServerTokenizer {
  private detection: Promise<TokenizeDialect | undefined> | undefined;
  private readonly root: string;

  constructor(
    baseURL: string,
    private readonly model: string,
    private readonly opts: { fetch?: typeof globalThis.fetch | undefined; apiKey?: () => string | undefined; timeoutMs?: number } = {},
  ) {
    this.root = baseURL.replace(/\/+$/, "").replace(/\/v1$/, "");
  }

  /** The detected endpoint family (probed on first use, once). */
  dialect(): Promise<TokenizeDialect | undefined> {
    this.detection ??= this.detect();
    return this.detection;
  }

  /** Counts a chat request with the server's tokenizer, or undefined when the server has none. */
  async count(messages: ChatMessage[]): Promise<TokenCount | undefined> {
    const dialect = await this.dialect();
    if (dialect === undefined) return undefined;
    try {
      return await this.countWith(dialect, messages);
    } catch {
      return undefined;
    }
  }

  private async detect(): Promise<TokenizeDialect | undefined> {
    for (const d of ["vllm", "llama.cpp", "llama-cpp-python"] as const) {
      try {
        const c = await this.countWith(d, PROBE);
        if (c.tokens > 0) return d;
      } catch {
        // not this family
      }
    }
    return undefined;
  }

  private async countWith(dialect: TokenizeDialect, messages: ChatMessage[]): Promise<TokenCount> {
    if (dialect === "vllm") {
      const r = await this.post("/tokenize", { model: this.model, messages, add_generation_prompt: true });
      if (typeof r.count !== "number") throw new Error("no count");
      return { tokens: r.count, exact: true, method: "server tokenizer: vLLM /tokenize (chat template applied)", quality: "exact" };
    }
    if (dialect === "llama.cpp") {
      const t = await this.post("/apply-template", { messages });
      if (typeof t.prompt !== "string") throw new Error("no prompt");
      const r = await this.post("/tokenize", { content: t.prompt, add_special: true });
      if (!Array.isArray(r.tokens)) throw new Error("no tokens");
      return { tokens: r.tokens.length, exact: true, method: "server tokenizer: llama.cpp /apply-template + /tokenize", quality: "exact" };
    }
    let n = BOUND_BASE_TOKENS;
    for (const m of messages) {
      const r = await this.post("/extras/tokenize", { input: m.content, model: this.model });
      if (!Array.isArray(r.tokens)) throw new Error("no tokens");
      n += r.tokens.length + BOUND_TOKENS_PER_MESSAGE;
    }
    return {
      tokens: n,
      exact: false,
      method: "server tokenizer: llama-cpp-python /extras/tokenize per message + 16/message + 64 for the template",
      quality: "bound",
    };
  }

  private async post(path: string, body: unknown): Promise<Record<string, unknown>> {
    const key = this.opts.apiKey?.();
    const res = await (this.opts.fetch ?? globalThis.fetch)(this.root + path, {
      method: "POST",
      headers: { "content-type": "application/json", ...(key ? { authorization: `Bearer ${key}` } : {}) },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(this.opts.timeoutMs ?? 10_000),
    });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const json = (await res.json()) as unknown;
    if (json === null || typeof json !== "object") throw new Error("not an object");
    return json as Record<string, unknown>;
  }
}
