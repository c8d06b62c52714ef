import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { collectReportData } from "./data.ts";
import { renderReportHtml } from "./html.ts";

export * from "./data.ts";
export { escapeHtml, jsonForScript, renderReportHtml } from "./html.ts";

/** Builds report.html for a run directory (or `out`) and returns its path and data. */
export async function writeReport(runDir: string, out?: string): Promise<{ path: string; data: Awaited<ReturnType<typeof collectReportData>> }> {
  const data = await collectReportData(runDir);
  const path = out ?? join(runDir, "report.html");
  await writeFile(path, renderReportHtml(data));
  return { path, data };
}
