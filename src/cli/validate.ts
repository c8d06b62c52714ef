import type { Command } from "commander";

// Placeholder: filled in by the issue that owns `rankchain validate`.
export function registerValidate(program: Command): void {
  program.command("validate").description("(not implemented yet)").action(() => {
    process.stderr.write("rankchain validate: not implemented yet\n");
    process.exitCode = 1;
  });
}
