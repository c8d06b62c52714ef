import { z } from "zod";

/**
 * The chain record (DESIGN.md): one JSON object per line of chains.jsonl / validated.jsonl.
 * Extra fields are allowed (passthrough), so users' scripts and later stages can add their own.
 */
export const GeneratorInfoSchema = z
  .object({
    provider: z.string(),
    model: z.string(),
    steering: z.enum(["stepwise", "ladder", "cfg"]),
    guidance: z.number().optional(),
    prompt: z.string(),
    prompt_version: z.union([z.string(), z.number()]),
    warnings: z.array(z.unknown()).optional(),
  })
  .passthrough();

export const UsageSchema = z
  .object({
    input_tokens: z.number().nonnegative(),
    output_tokens: z.number().nonnegative(),
    usd: z.number().nonnegative(),
  })
  .passthrough();

export const ValidationSchema = z
  .object({
    embedder: z.string(),
    sims_to_anchor: z.array(z.number()),
    spearman: z.number().nullable(),
    inversions: z.number().int().nonnegative(),
    status: z.enum(["accepted", "repaired", "rejected"]),
    reasons: z.array(z.string()),
  })
  .passthrough();

export const ChainRecordSchema = z
  .object({
    id: z.string().min(1),
    anchor: z.string(),
    steps: z.array(z.string()),
    generator: GeneratorInfoSchema,
    usage: UsageSchema,
    validation: ValidationSchema.optional(),
    /** Why generation stopped early (truncated chain), when it did. */
    truncated: z.object({ at_step: z.number().int(), reason: z.string() }).optional(),
  })
  .passthrough();

export type GeneratorInfo = z.infer<typeof GeneratorInfoSchema>;
export type ChainUsage = z.infer<typeof UsageSchema>;
export type ChainValidation = z.infer<typeof ValidationSchema>;
export type ChainRecord = z.infer<typeof ChainRecordSchema>;
