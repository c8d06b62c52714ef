import type { Command } from "commander";

// Placeholder: filled in by the issue that owns `rankchain models`.
export function registerModels(program: Command): void {
  program.command("models").description("(not implemented yet)").action(() => {
    process.stderr.write("rankchain models: not implemented yet\n");
    process.exitCode = 1;
  });
}
