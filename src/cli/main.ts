import { Command, CommanderError } from "commander";
import { readFileSync } from "node:fs";
import { loadDotEnv } from "../config/env.ts";
import { EXIT } from "./exit-codes.ts";
import { registerGenerate } from "./generate.ts";
import { registerEstimate } from "./estimate.ts";
import { registerValidate } from "./validate.ts";
import { registerReport } from "./report.ts";
import { registerModels } from "./models.ts";
import { registerPosttrain } from "./posttrain.ts";
import { registerEval } from "./eval.ts";
import { registerMerge } from "./merge.ts";
import { registerBudget } from "./budget.ts";
import { registerSeeds } from "./seeds.ts";
import { registerMine } from "./mine.ts";
import { registerExport } from "./export.ts";

const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };

loadDotEnv();

const program = new Command()
  .name("rankchain")
  .description("Ranking chains from LLMs under a hard budget, checked with embeddings, for post-training embedders.")
  .version(pkg.version)
  .showHelpAfterError()
  .addHelpText(
    "after",
    `
Exit codes (every command): 0 done; 2 bad usage, config or input (the message names file:line, field
or flag); 3 budget cap reached (everything paid for is saved; --resume with a larger --max-usd
continues); 4 provider unreachable: N consecutive connection failures (everything paid for is saved;
--resume continues); 130 interrupted; 1 anything else.`,
  )
  .exitOverride();

registerSeeds(program);
registerGenerate(program);
registerEstimate(program);
registerValidate(program);
registerReport(program);
registerModels(program);
registerPosttrain(program);
registerEval(program);
registerMerge(program);
registerBudget(program);
registerMine(program);
registerExport(program);

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) {
    // help and version exit 0; every other parse failure is bad usage (exit 2)
    process.exitCode = e.exitCode === 0 ? EXIT.ok : EXIT.usage;
  } else {
    throw e;
  }
}
