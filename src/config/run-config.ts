import { z } from "zod";

/** The generate command's settings, validated once (flags → this schema → resolved run.json config). */
export const GenerateConfigSchema = z
  .object({
    input: z.string().min(1),
    out: z.string().min(1),
    provider: z.enum(["openai", "anthropic", "openai-compatible", "local"]),
    model: z.string().min(1),
    /** One base URL, or a comma-separated farm of OpenAI-compatible servers (least-outstanding routing). */
    baseUrl: z
      .string()
      .optional()
      .refine((v) => v === undefined || splitBaseUrls(v).every(isHttpUrl), { message: "expects http(s) URLs, comma-separated for a farm" }),
    /** "i/n": generate only the seeds whose text hashes to shard i of n (0-based). */
    shard: z.string().regex(/^\d+\/\d+$/, "expects i/n, e.g. 0/4").optional(),
    /** online: one request per call; batch: the provider's batch API (half price, asynchronous). */
    mode: z.enum(["online", "batch"]).default("online"),
    /** A shared ledger: postgres://… (else the run's ledger.jsonl). Never written to run.json with its password. */
    ledger: z.string().regex(/^postgres(ql)?:\/\//, "expects a postgres:// URL").optional(),
    /** The shared budget's id: every process naming it shares one cap. */
    budgetId: z.string().regex(/^[A-Za-z0-9_.:-]{1,128}$/, "expects 1-128 characters of A-Z a-z 0-9 _ . : -").default("default"),
    /** Seconds between batch status polls. */
    pollSeconds: z.number().min(0.01).max(3600).default(30),
    steps: z.number().int().min(1).max(64).default(8),
    steering: z.enum(["stepwise", "ladder", "cfg"]).default("stepwise"),
    guidance: z.number().min(0).max(20).default(1.5),
    /** Opt-in approximation of CFG: score only the positive prompt's top-K tokens (unset = exact). */
    cfgTopK: z.number().int().min(1).optional(),
    concurrency: z.number().int().min(1).max(256).default(4),
    maxUsd: z.number().positive().optional(),
    priceInput: z.number().nonnegative().optional(),
    priceOutput: z.number().nonnegative().optional(),
    prices: z.string().optional(),
    maxOutputTokens: z.number().int().min(1).max(32_768).default(100),
    temperature: z.number().min(0).max(2).default(0),
    seed: z.number().int().optional(),
    limit: z.number().int().min(1).optional(),
    resume: z.boolean().default(false),
    quiet: z.boolean().default(false),
    timeoutMs: z.number().int().min(100).default(60_000),
    maxRetries: z.number().int().min(0).max(20).default(4),
    promptVersion: z.number().int().min(1).optional(),
    /** Generate steps × oversample rewrites and keep every oversample-th (long chains, subsampled). */
    oversample: z.number().int().min(1).max(8).default(1),
    /** Retries of a bad chain step, each with changed settings recorded in the chain. */
    stepRetries: z.number().int().min(0).max(5).default(2),
    /** Length band, anti-append and anti-return rules on every step (src/generate/drift.ts). */
    driftRules: z.boolean().default(true),
    maxSeedChars: z.number().int().min(1).default(2000),
    gpu: z.enum(["auto", "cuda", "metal", "off"]).default("auto"),
    /** Local models: a chain's output does not depend on --concurrency (CPU, one thread, flash attention, prompts in pieces). */
    deterministic: z.boolean().default(false),
    /** A chain with fewer steps is not usable; a run with no usable chain is not "completed". Default min(3, steps). */
    minSteps: z.number().int().min(1).max(64).optional(),
    /** Circuit breaker: stop after this many consecutive connection failures (exit 4). */
    maxConnectionFailures: z.number().int().min(1).max(1000).default(5),
  })
  .superRefine((c, ctx) => {
    if (c.mode === "batch" && c.provider !== "openai" && c.provider !== "anthropic") {
      ctx.addIssue({ code: "custom", path: ["mode"], message: `batch needs --provider openai or anthropic (their batch APIs), not ${c.provider}` });
    }
    if (c.mode === "batch" && c.steering === "cfg") {
      ctx.addIssue({ code: "custom", path: ["mode"], message: "batch works with --steering stepwise or ladder" });
    }
    if (c.shard !== undefined) {
      const [i, n] = c.shard.split("/").map(Number) as [number, number];
      if (n < 1 || i >= n) ctx.addIssue({ code: "custom", path: ["shard"], message: `expects i/n with 0 ≤ i < n (0-based), got ${c.shard}` });
    }
    if (c.baseUrl !== undefined && splitBaseUrls(c.baseUrl).length > 1 && c.provider !== "openai-compatible") {
      ctx.addIssue({ code: "custom", path: ["baseUrl"], message: "several URLs (a farm) need --provider openai-compatible" });
    }
    if (c.provider === "openai-compatible" && !c.baseUrl && !process.env.OPENAI_BASE_URL) {
      ctx.addIssue({ code: "custom", path: ["baseUrl"], message: "openai-compatible needs --base-url (or OPENAI_BASE_URL)" });
    }
    if (c.baseUrl !== undefined && /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*@/i.test(c.baseUrl)) {
      ctx.addIssue({
        code: "custom",
        path: ["baseUrl"],
        message: "holds credentials (user:password@host), which Node's fetch refuses; remove them and put the key in OPENAI_API_KEY (?key= in the query is fine)",
      });
    }
    if (c.minSteps !== undefined && c.minSteps > c.steps) {
      ctx.addIssue({ code: "custom", path: ["minSteps"], message: `must be at most --steps (${c.steps}), got ${c.minSteps}` });
    }
    if (c.steering === "cfg" && c.guidance < 1) {
      ctx.addIssue({ code: "custom", path: ["guidance"], message: `must be >= 1 for --steering cfg (1 = plain decoding), got ${c.guidance}` });
    }
    if (c.cfgTopK !== undefined && c.steering !== "cfg") {
      ctx.addIssue({ code: "custom", path: ["cfgTopK"], message: "only applies to --steering cfg" });
    }
    if (c.deterministic && c.provider !== "local") {
      ctx.addIssue({ code: "custom", path: ["deterministic"], message: `only applies to --provider local, not ${c.provider}` });
    }
    if (c.deterministic && (c.gpu === "cuda" || c.gpu === "metal")) {
      ctx.addIssue({ code: "custom", path: ["deterministic"], message: `decodes on the CPU; use --gpu off or auto, not --gpu ${c.gpu}` });
    }
    if (c.steering === "cfg" && c.provider !== "local") {
      ctx.addIssue({
        code: "custom",
        path: ["steering"],
        message: `--steering cfg needs next-token log-probabilities, which only --provider local gives; use stepwise or ladder with ${c.provider}`,
      });
    }
  });
export type GenerateConfig = z.infer<typeof GenerateConfigSchema>;

/** "URL1, URL2" → ["URL1", "URL2"] (empty parts dropped). */
export function splitBaseUrls(v: string): string[] {
  return v.split(",").map((s) => s.trim()).filter((s) => s !== "");
}

function isHttpUrl(v: string): boolean {
  try {
    const u = new URL(v);
    return u.protocol === "http:" || u.protocol === "https:";
  } catch {
    return false;
  }
}
