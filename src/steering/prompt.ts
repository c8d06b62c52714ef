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
 * Parses a ladder response: strict JSON first; else the first {...} block (models that wrap JSON
 * in prose or code fences). Returns undefined when nothing valid is found.
 */
export function parseLadderResponse(text: string, n: number): string[] | undefined {
  const schema = ladderResponseSchema(n);
  const candidates = [text.trim()];
  const fenced = /```(?:json)?\s*([\s\S]*?)```/.exec(text);
  if (fenced?.[1]) candidates.push(fenced[1].trim());
  const first = text.indexOf("{");
  const last = text.lastIndexOf("}");
  if (first >= 0 && last > first) candidates.push(text.slice(first, last + 1));
  for (const c of candidates) {
    try {
      const r = schema.safeParse(JSON.parse(c));
      if (r.success) return r.data.steps.slice(0, n);
    } catch {
      // try the next candidate
    }
  }
  return undefined;
}
