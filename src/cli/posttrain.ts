import type { Command } from "commander";

// Placeholder: filled in by the issue that owns `rankchain posttrain`.
export function registerPosttrain(program: Command): void {
  program.command("posttrain").description("(not implemented yet)").action(() => {
    process.stderr.write("rankchain posttrain: not implemented yet\n");
    process.exitCode = 1;
  });
}
