import { join } from "node:path";
import { readJsonObjectIfPresent } from "../store/json-file.ts";

/** What report.html shows of mine.json (written by `rankchain mine`), read leniently. */
export interface MineReportData {
  embedders: string[];
  fusion: string;
  guard: number | null;
  top_k: number | null;
  group_size: number | null;
  positive: string | null;
  index: Record<string, string>;
  pool: { texts: number | null; corpus_lines: number | null };
  queries: number | null;
  groups: number | null;
  too_few_negatives: number | null;
  dropped: { rule: string; count: number; detail: string; samples: { query: string; positive: string; candidate: string; note: string }[] }[];
  negatives_by_source: Record<string, number>;
  groups_file: string | null;
}

const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);
const str = (v: unknown): string | null => (typeof v === "string" ? v : null);
const obj = (v: unknown): Record<string, unknown> => (v && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

export function readMine(runDir: string): MineReportData | null {
  const m = readJsonObjectIfPresent(join(runDir, "mine.json"));
  if (!m) return null;
  const settings = obj(m.settings);
  const dropped = obj(m.dropped);
  const samples = (rule: string) =>
    arr(obj(dropped[rule]).samples).map((s) => {
      const o = obj(s);
      const note =
        num(o.score) !== null
          ? `${str(o.embedder) ?? "?"}: ${num(o.score)!.toFixed(3)} > ${num(o.threshold)?.toFixed(3) ?? "?"} (guard × positive ${num(o.positive_score)?.toFixed(3) ?? "?"})`
          : (str(o.embedder) ?? "");
      return { query: str(o.query) ?? "", positive: str(o.positive) ?? "", candidate: str(o.candidate) ?? "", note };
    });
  const byEmbedder = obj(obj(dropped.guard).by_embedder);
  return {
    embedders: arr(m.embedders).map((e) => str(obj(e).id) ?? "?"),
    fusion: str(settings.fusion) ?? "?",
    guard: num(settings.guard),
    top_k: num(settings.top_k),
    group_size: num(settings.group_size),
    positive: str(settings.positive),
    index: Object.fromEntries(Object.entries(obj(m.index)).map(([k, v]) => [k, String(v)])),
    pool: { texts: num(obj(m.pool).texts), corpus_lines: num(obj(m.pool).corpus_lines) },
    queries: num(m.queries),
    groups: num(m.groups),
    too_few_negatives: num(obj(m.skipped).too_few_negatives),
    dropped: [
      {
        rule: "false-negative guard",
        count: num(obj(dropped.guard).count) ?? 0,
        detail: Object.entries(byEmbedder).map(([k, v]) => `${k}: ${String(v)}`).join(", "),
        samples: samples("guard"),
      },
      { rule: "query, positive or near step of the same chain", count: num(obj(dropped.self_or_same_chain).count) ?? 0, detail: "", samples: samples("self_or_same_chain") },
    ],
    negatives_by_source: Object.fromEntries(Object.entries(obj(m.negatives_by_source)).map(([k, v]) => [k, num(v) ?? 0])),
    groups_file: str(m.groups_file),
  };
}

export function mineHtml(m: MineReportData | null, escapeHtml: (s: string) => string): string {
  if (!m) return "";
  const kv = (k: string, v: string) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`;
  const fmt = (v: number | null) => (v === null ? "–" : String(v));
  const rows = [
    kv("embedders", m.embedders.map((e) => `${e} (${m.index[e] ?? "?"})`).join(" + ")),
    kv("fusion · guard · top-k · group size", `${m.fusion} · ${m.guard === null ? "off" : m.guard} · ${fmt(m.top_k)} · ${fmt(m.group_size)}`),
    kv("queries → groups", `${fmt(m.queries)} → ${fmt(m.groups)} (too few negatives: ${fmt(m.too_few_negatives)})`),
    kv("candidate pool", `${fmt(m.pool.texts)} texts (${fmt(m.pool.corpus_lines)} from --corpus)`),
    kv("negatives by source", Object.entries(m.negatives_by_source).map(([k, v]) => `${k} ${v}`).join(", ") || "–"),
  ].join("");
  const drops = m.dropped
    .map(
      (d) =>
        `<tr><td>${escapeHtml(d.rule)}</td><td class="num">${d.count}</td><td>${escapeHtml(d.detail)}</td></tr>` +
        d.samples
          .map(
            (s) =>
              `<tr class="sample"><td></td><td></td><td><b>query</b> ${escapeHtml(s.query)}<br><b>positive</b> ${escapeHtml(s.positive)}<br><b>dropped</b> ${escapeHtml(s.candidate)}${s.note ? ` <span class="tag">${escapeHtml(s.note)}</span>` : ""}</td></tr>`,
          )
          .join(""),
    )
    .join("");
  return `<section id="mine"><h2>Hard negatives (mine.json)</h2><table class="kv">${rows}</table>
<table class="data"><thead><tr><th>dropped by</th><th>candidates</th><th>samples</th></tr></thead><tbody>${drops}</tbody></table>
${m.groups_file ? `<p class="note">groups: ${escapeHtml(m.groups_file)}</p>` : ""}</section>`;
}
