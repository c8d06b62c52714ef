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
    .description("print the typical cost of a generate run and a worst-case bound, for an input and settings; spends nothing, needs no key or server");
  addGenerationOptions(cmd)
    .option("--max-usd <usd>", "report how many seeds fit under this cap, typically and guaranteed (at the worst case)", numberOption("--max-usd", { min: 0 }))
    .option("--json", "print JSON only", false)
    .action(
      action(async (opts: Record<string, unknown>) => {
        const steering = (opts.steering as string) ?? "stepwise";
        const config = parseWithSchema(GenerateConfigSchema.and(z.object({ json: z.boolean().default(false) })), {
          ...opts,
          out: "(estimate)",
          // estimate never contacts a server: an openai-compatible model needs no --base-url here
          baseUrl: opts.baseUrl ?? (opts.provider === "openai-compatible" ? "http://estimate.invalid/v1" : undefined),
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
        const fitAt = (usd: number | undefined) =>
          config.maxUsd !== undefined && usd !== undefined && usd > 0 ? Math.min(seeds.length, Math.floor((config.maxUsd / usd) * seeds.length)) : undefined;
        const fitTypical = fitAt(est.usd?.typical);
        const fitWorst = fitAt(est.usd?.worst);
        const out = {
          ...est,
          price: price ?? null,
          price_table_as_of: table.as_of,
          seeds_fitting_cap: config.maxUsd !== undefined ? { typical: fitTypical ?? null, guaranteed: fitWorst ?? null } : null,
        };
        if (config.json) {
          process.stdout.write(JSON.stringify(out) + "\n");
          return;
        }
        const noPrice = "unknown (no price for this model: pass --price-input/--price-output)";
        const prices = price ? `  (prices as of ${table.as_of}: $${price.input}/M in, $${price.output}/M out)` : "";
        process.stdout.write(
          [
            `seeds            ${est.seeds}${est.sampled < est.seeds ? ` (counted a sample of ${est.sampled})` : ""}`,
            `                 typical            worst case (a bound)`,
            `calls            ${pad(est.calls.typical)} ${est.calls.worst}`,
            `input tokens     ${pad(est.inputTokens.typical)} ${est.inputTokens.worst}`,
            `output tokens    ${pad(est.outputTokens.typical)} ${est.outputTokens.worst}`,
            `cost             ${est.usd ? `${pad("$" + est.usd.typical.toFixed(4))} $${est.usd.worst.toFixed(4)}${prices}` : noPrice}`,
            ...(config.maxUsd !== undefined && fitTypical !== undefined
              ? [`fits --max-usd   ${fitTypical} of ${seeds.length} seeds typically; ${fitWorst} guaranteed even at the worst case`]
              : []),
            `typical          ${est.method.typical}`,
            `worst case       ${est.method.worst}`,
          ].join("\n") + "\n",
        );
      }),
    );
}

function pad(v: number | string): string {
  return String(v).padEnd(18);
}
