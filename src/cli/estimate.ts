import { Command } from "commander";
import { z } from "zod";
import { GenerateConfigSchema } from "../config/run-config.ts";
import { loadPriceTable, resolvePrice } from "../config/prices.ts";
import { estimateRunCost } from "../budget/estimate.ts";
import { readSeeds } from "../generate/seeds.ts";
import { loadPromptTemplate } from "../steering/prompt-templates.ts";
import { addGenerationOptions } from "./generate.ts";
import { action, numberOption } from "./run-command.ts";
import { parseWithSchema } from "./options.ts";

export function registerEstimate(program: Command): void {
  const cmd = program
    .command("estimate")
    .description("print the projected cost range of a generate run for an input and settings; spends nothing, needs no key");
  addGenerationOptions(cmd)
    .option("--max-usd <usd>", "report how many seeds fit under this cap at the high estimate", numberOption("--max-usd", { min: 0 }))
    .option("--json", "print JSON only", false)
    .action(
      action(async (opts: Record<string, unknown>) => {
        const steering = (opts.steering as string) ?? "stepwise";
        const config = parseWithSchema(GenerateConfigSchema.and(z.object({ json: z.boolean().default(false) })), {
          ...opts,
          out: "(estimate)",
          maxOutputTokens: opts.maxOutputTokens ?? (steering === "ladder" ? 100 * Number(opts.steps ?? 8) : 100),
        });
        const seedFile = readSeeds(config.input, { maxChars: config.maxSeedChars });
        const seeds = config.limit !== undefined ? seedFile.seeds.slice(0, config.limit) : seedFile.seeds;
        const table = loadPriceTable(config.prices);
        const price = resolvePrice({
          table,
          provider: config.provider,
          model: config.model,
          priceInput: config.priceInput,
          priceOutput: config.priceOutput,
          required: false,
        });
        const template = loadPromptTemplate(config.steering === "ladder" ? "ladder" : "stepwise", config.promptVersion);
        const est = await estimateRunCost({
          seeds,
          provider: config.provider,
          model: config.model,
          steering: config.steering,
          steps: config.steps,
          maxOutputTokens: config.maxOutputTokens,
          template,
          price,
        });
        const fit =
          config.maxUsd !== undefined && est.usd && est.usd.high > 0
            ? Math.min(seeds.length, Math.floor((config.maxUsd / est.usd.high) * seeds.length))
            : undefined;
        const out = { ...est, price: price ?? null, price_table_as_of: table.as_of, seeds_fitting_cap_at_high: fit ?? null };
        if (config.json) {
          process.stdout.write(JSON.stringify(out) + "\n");
          return;
        }
        const usd = est.usd ? `$${est.usd.low.toFixed(4)} – $${est.usd.high.toFixed(4)}` : "unknown (no price for this model: pass --price-input/--price-output)";
        process.stdout.write(
          [
            `seeds            ${est.seeds}${est.sampled < est.seeds ? ` (counted a sample of ${est.sampled})` : ""}`,
            `calls            ${est.calls.low} – ${est.calls.high}`,
            `input tokens     ${est.inputTokens.low} – ${est.inputTokens.high}`,
            `output tokens    ${est.outputTokens.low} – ${est.outputTokens.high}`,
            `cost             ${usd}${price ? `  (prices as of ${table.as_of}: $${price.input}/M in, $${price.output}/M out)` : ""}`,
            ...(fit !== undefined ? [`fits --max-usd    ${fit} of ${seeds.length} seeds even at the high estimate`] : []),
            `method           ${est.method}; high = worst case the ledger reserves (max output every step, one retry each)`,
          ].join("\n") + "\n",
        );
      }),
    );
}
