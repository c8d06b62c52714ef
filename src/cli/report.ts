import type { Command } from "commander";

// Placeholder: filled in by the issue that owns `rankchain report`.
export function registerReport(program: Command): void {
  program.command("report").description("(not implemented yet)").action(() => {
    process.stderr.write("rankchain report: not implemented yet\n");
    process.exitCode = 1;
  });
}
