import type { Command } from "commander";

// Placeholder: filled in by the issue that owns `rankchain eval`.
export function registerEval(program: Command): void {
  program.command("eval").description("(not implemented yet)").action(() => {
    process.stderr.write("rankchain eval: not implemented yet\n");
    process.exitCode = 1;
  });
}
