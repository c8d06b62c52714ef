import type { Command } from "commander";

export function registerEstimate(program: Command): void {
  program.command("estimate").description("(not implemented yet)").action(() => {
    process.exitCode = 1;
  });
}
