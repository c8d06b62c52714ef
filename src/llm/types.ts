/**
 * The one provider contract. Every adapter (OpenAI, Anthropic, OpenAI-compatible, local GGUF)
 * implements LanguageModel; adapters make one call and catch nothing — the orchestrator in
 * src/generate owns retries, the budget ledger and appends.
 */

export type ProviderName = "openai" | "anthropic" | "openai-compatible" | "local";

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

/** Each field is number | undefined: a provider that does not report a count leaves it undefined. */
export interface LanguageModelUsage {
  inputTokens: number | undefined;
  outputTokens: number | undefined;
  cachedInputTokens: number | undefined;
}

export type UnifiedFinishReason = "stop" | "length" | "content-filter" | "error" | "other";

export interface FinishReason {
  unified: UnifiedFinishReason;
  raw: string | undefined;
}

/** A typed warning about something the provider could not do as asked (recorded, never silent). */
export type CallWarning =
  | { type: "unsupported-setting"; setting: string; details?: string }
  | { type: "other"; message: string };

/**
 * How a structured response is asked for, strongest first (OpenAI-compatible servers differ):
 * - json_schema: `response_format: { type: "json_schema", json_schema: { name, schema, strict } }`
 *   (OpenAI, vLLM, llama.cpp `llama-server`);
 * - json_object: `response_format: { type: "json_object", schema }` (llama-cpp-python's server,
 *   which rejects json_schema with HTTP 500 but constrains output to the schema given here);
 * - prompt: no response_format; the schema is spelled out in the prompt and the answer is
 *   extracted and repaired (servers that reject or ignore response_format).
 * The generator starts at json_schema and steps down once per run when a server rejects a mode.
 */
export type StructuredOutputMode = "json_schema" | "json_object" | "prompt";
export const STRUCTURED_OUTPUT_MODES: readonly StructuredOutputMode[] = ["json_schema", "json_object", "prompt"];

export interface JsonResponseFormat {
  type: "json";
  /** JSON Schema of the expected object. */
  schema: Record<string, unknown>;
  name: string;
  /** Default json_schema. Adapters with their own mechanism (Anthropic tools, local grammars) ignore it. */
  mode?: StructuredOutputMode | undefined;
}

export interface GenerateRequest {
  messages: ChatMessage[];
  maxOutputTokens: number;
  temperature?: number | undefined;
  seed?: number | undefined;
  /** Ask for a structured response where the provider supports it (ladder steering). */
  responseFormat?: JsonResponseFormat | undefined;
  /** Stop sequences; a local model also stops at a newline when asked for one sentence. */
  stop?: string[] | undefined;
  abortSignal?: AbortSignal | undefined;
  /** Per-request timeout in ms (adapters pass it to the SDK). */
  timeoutMs?: number | undefined;
  /** The orchestrator's key for this call (responses.jsonl); batch mode uses it as the custom_id. */
  callKey?: string | undefined;
}

/**
 * Classifier-free guidance over two prompts (local models only): both sequences are fed the same
 * generated tokens; the next token maximises G·log p(t|positive) − (G−1)·log p(t|negative).
 */
export interface GuidedGenerateRequest {
  positive: ChatMessage[];
  negative: ChatMessage[];
  guidance: number;
  maxOutputTokens: number;
  temperature?: number | undefined;
  seed?: number | undefined;
  /** End the step at the first newline (one sentence per step). Default true. */
  stopAtNewline?: boolean | undefined;
  abortSignal?: AbortSignal | undefined;
  /** Per-request timeout in ms (local models: counted from the start of decoding). */
  timeoutMs?: number | undefined;
}

export interface GenerateResult {
  text: string;
  finishReason: FinishReason;
  usage: LanguageModelUsage;
  warnings: CallWarning[];
  /** Provider request id, when the server sends one. */
  requestId?: string | undefined;
  /** The raw response body, for debugging (never written to the run directory). */
  raw?: unknown;
}

export interface TokenCount {
  tokens: number;
  /** true when counted with the model's own tokenizer or the provider's counting endpoint. */
  exact: boolean;
  method: string;
  /**
   * For the budget margin: "exact" (the model's tokenizer or the server's tokenize endpoint),
   * "bound" (never below the billed count), "estimate" (may be below it: Anthropic's count
   * endpoint, tiktoken for an unknown model). Absent: derived from `exact` and `method`.
   */
  quality?: "exact" | "bound" | "estimate" | undefined;
}

export interface ModelCapabilities {
  /** Full next-token log-probabilities from two contexts: enables --steering cfg. */
  guidance: boolean;
  /** Native structured output (JSON schema) for ladder steering. */
  structuredOutput: boolean;
  /** Whether calls cost money (hosted) or not (local). */
  paid: boolean;
}

export interface LanguageModel {
  readonly provider: ProviderName;
  readonly modelId: string;
  readonly capabilities: ModelCapabilities;
  generate(request: GenerateRequest): Promise<GenerateResult>;
  /** Only when capabilities.guidance is true. */
  generateGuided?(request: GuidedGenerateRequest): Promise<GenerateResult>;
  /**
   * Count (or conservatively estimate) the input tokens of a request, before it is sent. Pass the
   * request's responseFormat too: providers add the schema (OpenAI) or a tool (Anthropic) to the
   * prompt, and the count must cover it.
   */
  countInputTokens(
    messages: ChatMessage[],
    options?: { responseFormat?: JsonResponseFormat | undefined },
  ): Promise<TokenCount>;
  dispose?(): Promise<void>;
  /** A model that routes over several servers (a farm) reports one line per server. */
  serverStats?(): ServerStats[];
}

export interface ServerStats {
  url: string;
  requests: number;
  ok: number;
  failed: number;
  downs: number;
  healthy: boolean;
  outstanding: number;
  healthChecks: number;
}

export const emptyUsage = (): LanguageModelUsage => ({
  inputTokens: undefined,
  outputTokens: undefined,
  cachedInputTokens: undefined,
});
