/**
 * Token counting before a call, for the budget reservation.
 *
 * - OpenAI models: js-tiktoken with the model's encoding (o200k_base for gpt-4o / 4.1 / 4.5 / 5 and the
 *   o-series, cl100k_base for gpt-4 / gpt-3.5 / the embedding models) plus the chat format's documented
 *   overhead (OpenAI cookbook "How to count tokens with tiktoken"): 3 tokens per message, the role
 *   (1 token), and 3 tokens priming the reply. `exact: true`.
 * - Anything else: `conservativeTokenBound` — an upper bound that holds for every byte-level BPE
 *   tokenizer (each token covers at least one UTF-8 byte): bytes of all message contents + 16 tokens
 *   per message (chat template) + 64. `exact: false`.
 *
 * A JSON response format adds the schema to the prompt on the provider's side; its share is bounded
 * the same conservative way (bytes of the schema JSON + name + 64), so a count that includes a schema
 * is never `exact`.
 */
import type { Tiktoken } from "js-tiktoken/lite";
import type { ChatMessage, JsonResponseFormat, TokenCount } from "./types.ts";

export type OpenAIEncodingName = "o200k_base" | "cl100k_base";

/** Per-message overhead of the OpenAI chat format (cookbook, gpt-3.5-turbo-0613 and later). */
export const OPENAI_TOKENS_PER_MESSAGE = 3;
/** `<|start|>assistant<|message|>` priming every reply. */
export const OPENAI_REPLY_PRIMING_TOKENS = 3;

/** Overheads of the conservative bound. */
export const BOUND_TOKENS_PER_MESSAGE = 16;
export const BOUND_BASE_TOKENS = 64;

const utf8 = new TextEncoder();
export function utf8Bytes(text: string): number {
  return utf8.encode(text).length;
}

/**
 * The tiktoken encoding of an OpenAI model id, or undefined when the id is not a known OpenAI
 * family (then callers fall back to the conservative bound).
 */
export function openAIEncodingFor(model: string): OpenAIEncodingName | undefined {
  const m = model.toLowerCase().replace(/^openai\//, "");
  if (/^(gpt-4o|chatgpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|o1|o3|o4|gpt-oss|codex-mini)/.test(m)) return "o200k_base";
  if (/^(gpt-4|gpt-3\.5|gpt-35|text-embedding-3|text-embedding-ada-002)/.test(m)) return "cl100k_base";
  return undefined;
}

const encoders = new Map<OpenAIEncodingName, Promise<Tiktoken>>();

/** Loads (once per process) a tiktoken encoder; the rank files ship with js-tiktoken. */
export function getEncoder(name: OpenAIEncodingName): Promise<Tiktoken> {
  let p = encoders.get(name);
  if (!p) {
    p = (async () => {
      const { Tiktoken } = await import("js-tiktoken/lite");
      const ranks =
        name === "o200k_base"
          ? (await import("js-tiktoken/ranks/o200k_base")).default
          : (await import("js-tiktoken/ranks/cl100k_base")).default;
      return new Tiktoken(ranks);
    })();
    encoders.set(name, p);
  }
  return p;
}

/** Encodes text as ordinary text: special-token strings inside it are not treated as special. */
export function encodeOrdinary(enc: Tiktoken, text: string): number[] {
  return enc.encode(text, [], []);
}

function schemaBound(format: JsonResponseFormat | undefined): number {
  if (!format) return 0;
  return utf8Bytes(JSON.stringify(format.schema)) + utf8Bytes(format.name) + BOUND_BASE_TOKENS;
}

/**
 * Upper bound on the input tokens of a chat request for any byte-level BPE tokenizer:
 * UTF-8 bytes of every message content + 16 per message + 64 (+ the schema's bytes + 64 when a JSON
 * response format is requested).
 */
export function conservativeTokenBound(
  messages: ChatMessage[],
  extra?: { responseFormat?: JsonResponseFormat | undefined },
): number {
  let n = BOUND_BASE_TOKENS;
  for (const m of messages) n += utf8Bytes(m.content) + BOUND_TOKENS_PER_MESSAGE;
  return n + schemaBound(extra?.responseFormat);
}

export const CONSERVATIVE_METHOD = "conservative bound: utf-8 bytes + 16/message + 64";

/** Counts chat input tokens for an OpenAI model with tiktoken (exact for known families). */
export async function countOpenAIChatTokens(
  model: string,
  messages: ChatMessage[],
  extra?: { responseFormat?: JsonResponseFormat | undefined },
): Promise<TokenCount> {
  const known = openAIEncodingFor(model);
  const name = known ?? "o200k_base";
  const enc = await getEncoder(name);
  let n = OPENAI_REPLY_PRIMING_TOKENS;
  for (const m of messages) {
    n += OPENAI_TOKENS_PER_MESSAGE + encodeOrdinary(enc, m.role).length + encodeOrdinary(enc, m.content).length;
  }
  const schema = schemaBound(extra?.responseFormat);
  let method = `tiktoken ${name}${known ? "" : " (assumed for unknown model)"} + chat overhead`;
  if (schema > 0) method += " + schema bound";
  // An unknown model id may use another tokenizer: its count is an estimate (reserved with a margin).
  const quality = known === undefined ? "estimate" : schema === 0 ? "exact" : "bound";
  return { tokens: n + schema, exact: known !== undefined && schema === 0, method, quality };
}

/**
 * Tokens of a piece of text (e.g. an expected output) — tiktoken for OpenAI model ids, else the
 * UTF-8 byte count (an upper bound for byte-level BPE).
 */
export async function countTextTokens(text: string, model?: string): Promise<TokenCount> {
  const name = model ? openAIEncodingFor(model) : undefined;
  if (name) {
    const enc = await getEncoder(name);
    return { tokens: encodeOrdinary(enc, text).length, exact: true, method: `tiktoken ${name}` };
  }
  return { tokens: utf8Bytes(text), exact: false, method: "conservative bound: utf-8 bytes" };
}
