import { Command, Option } from "commander";
import { estimate, type EstimateOptions } from "../api/estimate.ts";
import { addGenerationOptions } from "./generate.ts";
import { action, numberOption } from "./run-command.ts";

export function registerEstimate(program: Command): void {
  const cmd = program
    .command("estimate")
    .description("print the typical cost of a generate run and a worst-case bound, for an input and settings; spends nothing, needs no key or server");
  addGenerationOptions(cmd)
    .option("--max-usd <usd>", "report how many seeds fit under this cap, typically and guaranteed (at the worst case)", numberOption("--max-usd", { min: 0 }))
    .addOption(new Option("--mode <mode>", "price the run as online calls or through the provider's batch API (half the list price; openai/anthropic)").choices(["online", "batch"]).default("online"))
    .option("--json", "print JSON only", false)
    .action(
      action(async (opts: Record<string, unknown>) => {
        const { json, ...settings } = opts as EstimateOptions & { json?: boolean };
        const out = await estimate(settings);
        const est = out;
        const price = out.price;
        const table = { as_of: out.price_table_as_of };
        const config = { json: json ?? false, maxUsd: settings.maxUsd };
        const seeds = { length: out.seed_count };
        const fitTypical = out.seeds_fitting_cap?.typical ?? undefined;
        const fitWorst = out.seeds_fitting_cap?.guaranteed ?? undefined;
        if (config.json) {
          process.stdout.write(JSON.stringify(out) + "\n");
          return;
        }
        const noPrice = "unknown (no price for this model: pass --price-input/--price-output)";
        const batchNote = out.mode === "batch" ? `, batch API: half of $${out.list_price?.input}/M in, $${out.list_price?.output}/M out` : "";
        const prices = price ? `  (prices as of ${table.as_of}: $${price.input}/M in, $${price.output}/M out${batchNote})` : "";
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
