/**
 * Opt-in compatibility run against a real OpenAI-compatible server nobody here wrote:
 * llama-cpp-python's `python -m llama_cpp.server`, serving a carried GGUF. Not part of CI or the
 * test suite (it needs a source build of llama-cpp-python and minutes of CPU).
 *
 *   bash bench/compat/setup-llama-cpp-python.sh            # once: scratch venv with llama-cpp-python[server]
 *   npx tsx bench/compat/run.ts [--venv DIR] [--gguf FILE] [--seeds N] [--steps N]
 *
 * Scenarios, each through the real CLI (bin/rankchain.js) from a scratch directory: estimate,
 * stepwise, ladder, a run capped below its cost (exit 3), its resume with a larger cap, and a
 * run whose server is killed mid-run (exit 4), resumed after a restart. Prints one table.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { PROJECT_ROOT } from "../../src/config/paths.ts";

const args = process.argv.slice(2);
const flag = (name: string, dflt: string): string => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : dflt;
};
const cache = process.env.RANKCHAIN_CACHE ?? join(homedir(), ".cache", "rankchain");
const venv = flag("--venv", join(cache, "compat-venv"));
const gguf = flag("--gguf", join(cache, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"));
const nSeeds = Number(flag("--seeds", "3"));
const steps = flag("--steps", "3");
const python = join(venv, "bin", "python");
if (!existsSync(python)) {
  console.error(`compat: no venv at ${venv}; run bash bench/compat/setup-llama-cpp-python.sh first`);
  process.exit(2);
}
if (!existsSync(gguf)) {
  console.error(`compat: no GGUF at ${gguf}; run rankchain models pull (or pass --gguf)`);
  process.exit(2);
}

const SEEDS = [
  "A small dog waited patiently outside the grocery store.",
  "The river flooded the lower fields after three days of heavy rain.",
  "Fresh bread from the corner bakery sells out before noon.",
  "The committee postponed its vote on the new budget until next month.",
  "A cyclist repaired a flat tire at the side of the mountain road.",
  "The museum added a wing for modern sculpture last spring.",
];

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

let server: ChildProcess | undefined;
const port = await freePort();
const baseUrl = `http://127.0.0.1:${port}/v1`;

async function startServer(): Promise<string> {
  server = spawn(python, ["-m", "llama_cpp.server", "--model", gguf, "--host", "127.0.0.1", "--port", String(port), "--n_ctx", "4096", "--n_threads", "1"], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  server.stderr!.on("data", (d: Buffer) => (log = (log + d.toString()).slice(-4000)));
  for (let i = 0; i < 600; i++) {
    try {
      const r = await fetch(`${baseUrl}/models`);
      if (r.ok) {
        const body = (await r.json()) as { data?: Array<{ id: string }> };
        return body.data?.[0]?.id ?? "model";
      }
    } catch {
      // not up yet
    }
    if (server.exitCode !== null) throw new Error(`llama_cpp.server exited: ${log}`);
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error("llama_cpp.server did not come up in 5 minutes");
}

function stopServer(): Promise<void> {
  return new Promise((resolve) => {
    if (!server || server.exitCode !== null) return resolve();
    server.once("exit", () => resolve());
    server.kill("SIGKILL");
  });
}

const work = mkdtempSync(join(tmpdir(), "rankchain-compat-"));
writeFileSync(join(work, "seeds.txt"), SEEDS.slice(0, nSeeds).join("\n") + "\n");

interface Row {
  scenario: string;
  exit: number | null;
  status: string;
  chains: string;
  steps: string;
  note: string;
}
const rows: Row[] = [];

function cli(argv: string[], onLine?: (line: string, kill: () => void) => void): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(PROJECT_ROOT, "bin", "rankchain.js"), ...argv], { cwd: work, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: "skip" } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
      onLine?.(d.toString(), () => child.kill("SIGINT"));
    });
    child.on("exit", (code) => resolve({ code, stdout, stderr }));
  });
}

function runRow(scenario: string, out: string, r: { code: number | null; stderr: string }, note = ""): void {
  const runJson = join(work, out, "run.json");
  const m = existsSync(runJson) ? (JSON.parse(readFileSync(runJson, "utf8")) as { status: string; totals: Record<string, number>; structured_output?: { mode: string } }) : undefined;
  const err = r.stderr.split("\n").find((l) => l.startsWith("rankchain:"))?.slice(0, 140) ?? "";
  rows.push({
    scenario,
    exit: r.code,
    status: m?.status ?? "-",
    chains: m ? `${m.totals.chains_done}/${m.totals.seeds} (usable ${m.totals.chains_usable ?? "?"})` : "-",
    steps: m ? String(m.totals.steps) : "-",
    note: [note, m?.structured_output ? `structured_output=${m.structured_output.mode}` : "", m ? `$${m.totals.usd}` : "", err].filter(Boolean).join("; "),
  });
}

const model = await startServer();
const version = await new Promise<string>((resolve) => {
  const p = spawn(python, ["-c", "import llama_cpp; print(llama_cpp.__version__)"]);
  let s = "";
  p.stdout.on("data", (d: Buffer) => (s += d.toString()));
  p.on("exit", () => resolve(s.trim()));
});
const common = ["--provider", "openai-compatible", "--base-url", baseUrl, "--model", model, "--input", "seeds.txt", "--steps", steps, "--concurrency", "1", "--quiet"];
const priced = ["--price-input", "1", "--price-output", "2"];

try {
  const est = await cli(["estimate", ...common.filter((a) => a !== "--quiet" && a !== "--concurrency" && a !== "1"), ...priced, "--json"]);
  const e = est.code === 0 ? (JSON.parse(est.stdout) as { usd?: { low: number; high: number } }) : undefined;
  rows.push({ scenario: "estimate", exit: est.code, status: "-", chains: "-", steps: "-", note: e?.usd ? `$${e.usd.low.toFixed(5)} – $${e.usd.high.toFixed(5)}` : est.stderr.slice(0, 140) });

  runRow("stepwise", "stepwise", await cli(["generate", ...common, "--out", "stepwise", "--steering", "stepwise"]));
  runRow("ladder", "ladder", await cli(["generate", ...common, "--out", "ladder", "--steering", "ladder"]));

  const full = JSON.parse(readFileSync(join(work, "stepwise", "run.json"), "utf8")) as { totals: { input_tokens: number; output_tokens: number } };
  const fullUsd = (full.totals.input_tokens * 1 + full.totals.output_tokens * 2) / 1e6;
  const cap = Math.max(1e-6, fullUsd * 0.4);
  runRow("capped (40% of stepwise cost)", "capped", await cli(["generate", ...common, ...priced, "--out", "capped", "--max-usd", cap.toFixed(6)]), `cap $${cap.toFixed(6)}`);
  runRow("resume, larger cap", "capped", await cli(["generate", ...common, ...priced, "--out", "capped", "--max-usd", (fullUsd * 20).toFixed(6), "--resume"]));

  // kill the server once the first chain is saved
  let killed = false;
  const killRun = cli(["generate", ...common, "--out", "killed", "--max-connection-failures", "3", "--max-retries", "2"]);
  const watch = setInterval(() => {
    const chains = join(work, "killed", "chains.jsonl");
    if (!killed && existsSync(chains) && readFileSync(chains, "utf8").trim() !== "") {
      killed = true;
      void stopServer();
    }
  }, 200);
  const killedResult = await killRun;
  clearInterval(watch);
  runRow("server killed mid-run", "killed", killedResult, killed ? "server killed after chain 1" : "finished before the kill");
  await startServer();
  runRow("resume after restart", "killed", await cli(["generate", ...common, "--out", "killed", "--resume"]));
} finally {
  await stopServer();
}

const header = ["scenario", "exit", "status", "chains", "steps", "note"] as const;
const table = [header as readonly string[], ...rows.map((r) => [r.scenario, String(r.exit), r.status, r.chains, r.steps, r.note])];
console.log(`llama-cpp-python ${version} (python -m llama_cpp.server), model ${gguf.split("/").pop()}, ${nSeeds} seeds × ${steps} steps, run dirs in ${work}`);
for (const r of table) console.log("| " + r.join(" | ") + " |");
