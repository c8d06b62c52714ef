/**
 * `rankchain seeds` on synthetic Markdown corpora of growing size: lines/s and peak RSS.
 *
 *   npx tsx bench/seeds/run.ts [maxLines=1000000]
 *
 * Writes corpora of maxLines/10, maxLines/3 and maxLines lines (prose paragraphs, headings, lists,
 * fenced code, tables, boilerplate and repeated sentences; deterministic) to bench/out/seeds/, then
 * runs extractSeeds on each in a fresh child process (so peak RSS is per run) with the same
 * settings: --sample 200, --holdout 0.1, the default pool (4,000), `--embedder hashed` (so the
 * fixed cost of embedding the pool does not hide the streaming cost; with all-MiniLM-L6-v2 the pool
 * adds a constant ~1–2 min on CPU, independent of corpus size). Prints lines/s and peak RSS per size
 * and the RSS ratio largest/smallest (flat = about 1).
 */
import { spawnSync } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { mulberry32 } from "../../src/util/random.ts";

const OUT = join("bench", "out", "seeds");

const WORDS = (
  "customer ticket refund invoice billing account password login delivery parcel warehouse order shipping return policy agent " +
  "team manager engineer outage incident report survey score chat phone email support product feature release update version " +
  "contract clause party term payment notice period liability warranty data privacy request review approval audit record " +
  "quickly slowly carefully always never often rarely usually today tomorrow yesterday after before during within without " +
  "new old large small late early broken missing wrong correct urgent simple complex public private internal external"
).split(" ");
const VERBS = "checks sends receives approves rejects updates reviews escalates refunds ships tracks reports explains requests".split(" ");

function sentence(rand: () => number): string {
  const n = 6 + Math.floor(rand() * 14);
  const words: string[] = [];
  for (let i = 0; i < n; i++) words.push(i === 2 ? VERBS[Math.floor(rand() * VERBS.length)]! : WORDS[Math.floor(rand() * WORDS.length)]!);
  const s = words.join(" ");
  return s[0]!.toUpperCase() + s.slice(1) + ".";
}

async function writeCorpus(path: string, lines: number): Promise<void> {
  if (existsSync(path)) return;
  const rand = mulberry32(lines);
  const out = createWriteStream(path);
  const recent: string[] = [];
  let written = 0;
  const emit = async (l: string) => {
    written++;
    if (!out.write(l + "\n")) await new Promise<void>((r) => out.once("drain", () => r()));
  };
  while (written < lines) {
    const r = rand();
    if (r < 0.05) await emit(`## ${sentence(rand).slice(0, 30)}`);
    else if (r < 0.08) {
      await emit("```js");
      await emit(`const x = compute(${Math.floor(rand() * 100)});`);
      await emit("```");
    } else if (r < 0.1) await emit(`| ${WORDS[written % WORDS.length]} | ${Math.floor(rand() * 1000)} |`);
    else if (r < 0.12) await emit("Copyright 2025 Example Corp. All rights reserved.");
    else if (r < 0.2 && recent.length > 0) await emit(recent[Math.floor(rand() * recent.length)]!); // a repeat
    else if (r < 0.3) await emit("");
    else {
      const s = sentence(rand) + " " + sentence(rand);
      recent.push(s);
      if (recent.length > 500) recent.shift();
      await emit(s);
    }
  }
  await new Promise<void>((r) => out.end(() => r()));
}

if (process.argv[2] === "--child") {
  const { extractSeeds } = await import("../../src/seeds/index.ts");
  const [corpus, out] = [process.argv[3]!, process.argv[4]!];
  const t0 = performance.now();
  const summary = await extractSeeds({ from: [corpus], out, sample: 200, holdout: 0.1, embedder: "hashed" });
  const seconds = (performance.now() - t0) / 1000;
  process.stdout.write(JSON.stringify({ seconds, maxRssMb: process.resourceUsage().maxRSS / 1024, sentences: summary.sentences, distinct: summary.distinct, seeds: summary.seeds }) + "\n");
} else {
  const max = Number(process.argv[2] ?? 1_000_000);
  mkdirSync(OUT, { recursive: true });
  const sizes = [Math.round(max / 10), Math.round(max / 3), max];
  const rows: { lines: number; mb: number; seconds: number; linesPerS: number; maxRssMb: number; sentences: number; seeds: number }[] = [];
  for (const lines of sizes) {
    const corpus = join(OUT, `corpus-${lines}.md`);
    await writeCorpus(corpus, lines);
    const r = spawnSync(process.execPath, ["--import", "tsx", "bench/seeds/run.ts", "--child", corpus, join(OUT, `seeds-${lines}.jsonl`)], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(r.stderr);
    const m = JSON.parse(r.stdout.trim().split("\n").pop()!) as { seconds: number; maxRssMb: number; sentences: number; seeds: number };
    rows.push({ lines, mb: statSync(corpus).size / 1e6, ...m, linesPerS: lines / m.seconds });
  }
  console.log("lines      MB     seconds  lines/s   sentences  seeds  peak RSS MB");
  for (const r of rows)
    console.log(
      `${String(r.lines).padEnd(10)} ${r.mb.toFixed(1).padStart(6)} ${r.seconds.toFixed(1).padStart(8)} ${Math.round(r.linesPerS).toString().padStart(8)} ${String(r.sentences).padStart(11)} ${String(r.seeds).padStart(6)} ${r.maxRssMb.toFixed(0).padStart(12)}`,
    );
  const first = rows[0]!;
  const last = rows[rows.length - 1]!;
  console.log(`input ${(last.lines / first.lines).toFixed(0)}x larger: peak RSS ${(last.maxRssMb / first.maxRssMb).toFixed(2)}x, lines/s ${(last.linesPerS / first.linesPerS).toFixed(2)}x`);
}
