import type { ChainRecord } from "../store/chain-record.ts";
import type { RunManifest } from "../store/run-dir.ts";

/**
 * The dataset card (README.md) of an export: YAML front matter in the Hugging Face Hub format
 * (`configs` with `data_files`, so `datasets.load_dataset(DIR)` needs no arguments; `license`,
 * tags, size) and a body that says where the data came from: generator and steering, what it cost,
 * the validation gate's settings and acceptance, and how each format was built.
 */
export interface CardConfig {
  name: string;
  files: { split: string; path: string; rows: number }[];
  columns: string[];
}

export interface CardInput {
  format: string;
  configs: CardConfig[];
  defaultConfig: string;
  license: string;
  manifest: RunManifest | undefined;
  validation: Record<string, unknown> | undefined;
  chains: ChainRecord[];
  counts: { read: number; kept: number; rejected: number; unvalidated: number; too_short: number; train: number; test: number };
  steps: number | undefined;
  options: { testFraction: number; triplets: string; scorePairs: string };
}

const q = (s: string) => JSON.stringify(s); // a JSON string is a valid YAML scalar

function sizeCategory(n: number): string {
  if (n < 1_000) return "n<1K";
  if (n < 10_000) return "1K<n<10K";
  if (n < 100_000) return "10K<n<100K";
  if (n < 1_000_000) return "100K<n<1M";
  return "1M<n<10M";
}

const FORMAT_TEXT: Record<string, string> = {
  hf: "Config `chains` (default): one row per chain, `anchor` then `step_1` … `step_K`, each step one rewrite further in meaning from the anchor; rows have a fixed K so sentence-transformers' trainer can pass every column to a chain loss. Config `records`: the full rankchain chain records (id, generator, usage, validation), steps cut where validation kept them.",
  "st-triplets": "`anchor`, `positive`, `negative`: both from the anchor's chain, the positive earlier (closer in meaning) than the negative. For MultipleNegativesRankingLoss / TripletLoss.",
  "st-scores": "`sentence1`, `sentence2`, `score` in [0, 1] = 1 − d / (n + 1) for two sentences d steps apart in a chain of n steps. For CoSENT / AnglE / CosineSimilarityLoss.",
  "mteb-rerank": "Held-out chains as a reranking task: `query` = anchor, `positive` = the first steps (graded `positive_relevance`, closest highest), `negative` = the last steps. Score it with `rankchain eval --rerank FILE` (MAP, MRR@10, nDCG@10) or MTEB's reranking evaluator.",
};

export function datasetCard(c: CardInput): string {
  const rows = c.configs.reduce((s, cfg) => s + cfg.files.reduce((t, f) => t + f.rows, 0), 0);
  const yaml: string[] = ["---", `license: ${q(c.license)}`, "language:", "- en", "tags:", "- rankchain", "- synthetic", "- ranking-chains", "- sentence-transformers"];
  yaml.push("task_categories:", c.format === "mteb-rerank" ? "- text-ranking" : "- sentence-similarity");
  yaml.push("size_categories:", `- ${q(sizeCategory(rows))}`, "configs:");
  for (const cfg of c.configs) {
    yaml.push(`- config_name: ${q(cfg.name)}`);
    if (cfg.name === c.defaultConfig) yaml.push("  default: true");
    yaml.push("  data_files:");
    for (const f of cfg.files) yaml.push(`  - split: ${q(f.split)}`, `    path: ${q(f.path)}`);
  }
  yaml.push("---");

  const generators = new Map<string, number>();
  let usd = 0;
  let inTok = 0;
  let outTok = 0;
  for (const r of c.chains) {
    const g = r.generator;
    const key = `${g.provider} / ${g.model} / steering ${g.steering}${g.guidance !== undefined ? ` (γ = ${g.guidance})` : ""}${(g as { cfg_top_k?: number }).cfg_top_k ? `, top-K ${(g as { cfg_top_k?: number }).cfg_top_k}` : ""} / prompt ${g.prompt} v${g.prompt_version}`;
    generators.set(key, (generators.get(key) ?? 0) + 1);
    usd += r.usage.usd;
    inTok += r.usage.input_tokens;
    outTok += r.usage.output_tokens;
  }
  const m = c.manifest;
  const v = c.validation;
  const vc = v?.counts as Record<string, number> | undefined;
  const emb = v?.embedder as { id?: string } | undefined;
  const body: string[] = [
    `# rankchain ranking chains (${c.format})`,
    "",
    "Synthetic ranking chains made with rankchain: an LLM rewrites each anchor sentence step by step, each step further in meaning from the anchor, and an embedding gate checks the order.",
    "",
    "## Licence",
    "",
    `\`${c.license}\`. The text was written by the generator below: check that its terms allow your use, and the licence of the seed documents the anchors came from.`,
    "",
    "## Data",
    "",
    FORMAT_TEXT[c.format] ?? "",
    "",
    "| config | split | file | rows |",
    "|---|---|---|---|",
    ...c.configs.flatMap((cfg) => cfg.files.map((f) => `| ${cfg.name}${cfg.name === c.defaultConfig ? " (default)" : ""} | ${f.split} | \`${f.path}\` | ${f.rows} |`)),
    "",
    `Columns: ${c.configs.map((cfg) => `${cfg.name}: ${cfg.columns.map((x) => `\`${x}\``).join(", ")}`).join("; ")}.`,
    `Splits: a chain is in \`test\` when a hash of its id falls below ${c.options.testFraction} (stable across exports)${c.steps !== undefined ? `; chains have ${c.steps} steps (shorter chains only in \`records\`)` : ""}${c.format === "st-triplets" ? `; triplets: ${c.options.triplets}` : ""}${c.format === "st-scores" ? `; pairs: ${c.options.scorePairs}` : ""}.`,
    "",
    "```python",
    "from datasets import load_dataset",
    `ds = load_dataset("path/to/this/folder")  # the \"${c.defaultConfig}\" config`,
    "```",
    "",
    "## Generator",
    "",
    ...[...generators].map(([k, n]) => `- ${k}: ${n} chains`),
    "",
    "## Cost",
    "",
    `- kept chains: $${usd.toFixed(4)} (${inTok} input, ${outTok} output tokens, including retries and rejected outputs of those chains)`,
    ...(m ? [`- whole run: $${m.totals.usd.toFixed(4)} over ${m.totals.calls} calls (${m.totals.input_tokens} input, ${m.totals.output_tokens} output tokens); status ${m.status}`] : []),
    ...(m && c.counts.kept > 0 ? [`- per kept chain: $${(m.totals.usd / c.counts.kept).toFixed(6)}`] : []),
    "",
    "## Validation gate",
    "",
    ...(v
      ? [
          `- embedder: \`${emb?.id ?? "?"}\`, policy \`${String(v.policy)}\`, min steps ${String(v.min_steps)}`,
          `- thresholds: \`${JSON.stringify(v.thresholds ?? {})}\``,
          `- acceptance: ${vc ? `${vc.accepted ?? 0} accepted, ${vc.repaired ?? 0} repaired, ${vc.rejected ?? 0} rejected of ${vc.chains ?? "?"} chains` : "?"}`,
        ]
      : ["- not validated (exported with --allow-unvalidated)"]),
    `- this export: ${c.counts.read} records read, ${c.counts.kept} kept (${c.counts.train} train, ${c.counts.test} test), ${c.counts.rejected} rejected, ${c.counts.unvalidated} unvalidated, ${c.counts.too_short} without steps`,
    "",
  ];
  return yaml.join("\n") + "\n\n" + body.join("\n");
}
