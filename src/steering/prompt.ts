import { z } from "zod";
import type { GenerateRequest, JsonResponseFormat } from "../llm/types.ts";
import { delimit, loadPromptTemplate, renderTemplate, type PromptTemplate } from "./prompt-templates.ts";

/**
 * Prompt-level direction control for models without logits (hosted APIs), and for comparing
 * strategies on local models: `stepwise` (one call per step, showing the chain so far) and
 * `ladder` (one call returning all N steps as structured JSON).
 */
export type PromptSteering = "stepwise" | "ladder";

export function stepwiseTemplate(version?: number): PromptTemplate {
  return loadPromptTemplate("stepwise", version);
}

export function ladderTemplate(version?: number): PromptTemplate {
  return loadPromptTemplate("ladder", version);
}

export function formatChainSoFar(steps: readonly string[]): string {
  if (steps.length === 0) return "(none yet)";
  return steps.map((s, i) => `${i + 1}. <sentence>${delimit(s)}</sentence>`).join("\n");
}

export interface StepRequestInput {
  anchor: string;
  stepsSoFar: readonly string[];
  totalSteps: number;
  maxOutputTokens: number;
  temperature?: number | undefined;
  seed?: number | undefined;
}

export function buildStepwiseRequest(tpl: PromptTemplate, input: StepRequestInput): GenerateRequest {
  const messages = renderTemplate(tpl, {
    anchor: delimit(input.anchor),
    chain: formatChainSoFar(input.stepsSoFar),
    step: input.stepsSoFar.length + 1,
    steps: input.totalSteps,
  });
  return {
    messages,
    maxOutputTokens: input.maxOutputTokens,
    temperature: input.temperature,
    seed: input.seed,
  };
}

export function ladderResponseSchema(n: number) {
  return z.object({ steps: z.array(z.string()).min(1).max(n * 2) });
}

export function ladderJsonSchema(n: number): JsonResponseFormat {
  return {
    type: "json",
    name: "ranking_chain",
    schema: {
      type: "object",
      properties: {
        steps: { type: "array", items: { type: "string" }, minItems: n, maxItems: n },
      },
      required: ["steps"],
      additionalProperties: false,
    },
  };
}

export function buildLadderRequest(
  tpl: PromptTemplate,
  input: { anchor: string; totalSteps: number; maxOutputTokens: number; temperature?: number | undefined; seed?: number | undefined },
): GenerateRequest {
  return {
    messages: renderTemplate(tpl, { anchor: delimit(input.anchor), steps: input.totalSteps }),
    maxOutputTokens: input.maxOutputTokens,
    temperature: input.temperature,
    seed: input.seed,
    responseFormat: ladderJsonSchema(input.totalSteps),
  };
}

/**
 * Parses a ladder response: strict JSON first; else the JSON inside a code fence or the first
 * {...} / [...] block (models that wrap JSON in prose); then repairs common shapes with zod — a bare
 * array, another key than "steps", `{"1": "…"}`, items as `{"sentence": "…"}` — and as a last resort
 * reads a numbered list ("1. …"). Returns the first n items, or undefined when nothing usable is found.
 */
export function parseLadderResponse(text: string, n: number): string[] | undefined {
  return parseLadderItems(text, n)?.slice(0, n);
}

const itemSchema = z.union([
  z.string(),
  z.object({ sentence: z.string() }).passthrough().transform((o) => o.sentence),
  z.object({ text: z.string() }).passthrough().transform((o) => o.text),
  z.object({ step: z.string() }).passthrough().transform((o) => o.step),
]);

/** Every item of a ladder response (up to 2n, so a caller can drop a bad first item), repaired. */
export function parseLadderItems(text: string, n: number): string[] | undefined {
  const items = z.array(itemSchema).min(1).max(n * 2);
  const asItems = (v: unknown): string[] | undefined => {
    const r = items.safeParse(v);
    if (!r.success) return undefined;
    const out = r.data.map((s) => s.trim()).filter((s) => s !== "");
    return out.length > 0 ? out : undefined;
  };
  const coerce = (json: unknown): string[] | undefined => {
    const strict = ladderResponseSchema(n).safeParse(json);
    if (strict.success) return asItems(strict.data.steps);
    if (Array.isArray(json)) return asItems(json);
    if (json && typeof json === "object") {
      const obj = json as Record<string, unknown>;
      if (Array.isArray(obj.steps)) return asItems(obj.steps);
      const arrays = Object.values(obj).filter(Array.isArray);
      if (arrays.length === 1) return asItems(arrays[0]);
      const values = Object.entries(obj);
      if (values.length > 0 && values.every(([k, v]) => /^\d+$/.test(k) && typeof v === "string")) return asItems(values.map(([, v]) => v));
    }
    return undefined;
  };
  const candidates = [text.trim()];
  const fenced = /```(?:json)?\s*([\s\S]*?)```/.exec(text);
  if (fenced?.[1]) candidates.push(fenced[1].trim());
  for (const [open, close] of [["{", "}"], ["[", "]"]] as const) {
    const first = text.indexOf(open);
    const last = text.lastIndexOf(close);
    if (first >= 0 && last > first) candidates.push(text.slice(first, last + 1));
  }
  for (const c of candidates) {
    try {
      const got = coerce(JSON.parse(c));
      if (got) return got;
    } catch {
      // try the next candidate
    }
  }
  // no JSON: a numbered list, one item per line
  const numbered = [...text.matchAll(/^[ \t]*\d{1,2}[.)][ \t]+(.+?)[ \t]*$/gm)].map((m) => m[1]!);
  return numbered.length >= 2 ? numbered.slice(0, n * 2) : undefined;
}
