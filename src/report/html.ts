import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import type { ExampleChain, ReportData } from "./data.ts";
import { mineHtml } from "./mine.ts";

/** HTML-escapes text for element content and attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

/** JSON for a <script type="application/json"> block: nothing in it can close the element. */
export function jsonForScript(value: unknown): string {
  return JSON.stringify(value).replace(/</g, "\\u003c").replace(/>/g, "\\u003e").replace(/&/g, "\\u0026").replace(/\u2028/g, "\\u2028").replace(/\u2029/g, "\\u2029");
}

let chartJs: string | undefined;
/** Chart.js's UMD bundle, read from node_modules, to inline (the report never touches the network). */
export function chartJsSource(): string {
  if (chartJs === undefined) {
    const require = createRequire(import.meta.url);
    // the package's "exports" hide dist/chart.umd.js; find it next to the CommonJS entry
    const path = join(dirname(require.resolve("chart.js")), "chart.umd.js");
    chartJs = readFileSync(path, "utf8").replace(/<\/script/gi, "<\\/script");
  }
  return chartJs;
}

function usd(x: number | null | undefined): string {
  if (x === null || x === undefined) return "–";
  if (x === 0) return "$0";
  return x < 0.01 ? `$${x.toPrecision(3)}` : `$${x.toFixed(x < 10 ? 4 : 2)}`;
}

function fmt(x: number | null | undefined, digits = 3): string {
  return x === null || x === undefined ? "–" : x.toFixed(digits);
}

function pct(a: number, b: number): string {
  return b > 0 ? `${((100 * a) / b).toFixed(1)}%` : "–";
}

function exampleHtml(c: ExampleChain): string {
  const rows = c.steps
    .map(
      (s, i) =>
        `<tr class="${s.dropped ? "dropped" : ""}"><td class="num">${i + 1}</td><td class="num">${fmt(s.sim)}</td><td>${escapeHtml(s.text)}${s.dropped ? ' <span class="tag">cut by repair</span>' : ""}</td></tr>`,
    )
    .join("");
  const reasons = c.reasons.length ? c.reasons.map((r) => `<code>${escapeHtml(r)}</code>`).join(" ") : "none";
  return `<div class="example">
<div class="meta"><b>${escapeHtml(c.id)}</b> · <span class="status ${escapeHtml(c.status)}">${escapeHtml(c.status)}</span> · Spearman ${fmt(c.spearman)} · ${escapeHtml(c.generator)}</div>
<div class="meta">reasons: ${reasons}</div>
<table><thead><tr><th>step</th><th>cos to anchor</th><th>text</th></tr></thead><tbody>
<tr class="anchor"><td class="num">0</td><td class="num">1.000</td><td>${escapeHtml(c.anchor)}</td></tr>${rows}</tbody></table>
</div>`;
}

function evalHtml(d: ReportData): string {
  const e = d.eval;
  if (!e) return "";
  const rows = e.metrics
    .map((m) => {
      // delta is the improvement (eval negates it for lower-is-better metrics)
      const gain = m.delta;
      const cls = gain === null ? "" : gain > 0 ? "good" : gain < 0 ? "bad" : "";
      // a "point" is 0.01 on a 0–1 metric, or 1 on a metric already reported in points (|value| > 1.5)
      const scale = Math.max(Math.abs(m.baseline ?? 0), Math.abs(m.model ?? 0)) > 1.5 ? 1 : 100;
      const perPoint = gain !== null && gain > 0 && e.usd !== null ? usd(e.usd / (gain * scale)) : "–";
      const primary = e.primary_metric === m.name ? ' <span class="tag">primary</span>' : "";
      const title = m.description ? ` title="${escapeHtml(m.description)}"` : "";
      return `<tr${title}><td>${escapeHtml(m.name)}${primary}${m.greater_is_better ? "" : " (lower is better)"}</td><td class="num">${fmt(m.baseline, 4)}</td><td class="num">${fmt(m.model, 4)}</td><td class="num ${cls}">${gain === null ? "–" : (gain >= 0 ? "+" : "") + gain.toFixed(4)}</td><td class="num">${perPoint}</td></tr>`;
    })
    .join("");
  return `<section><h2>Before / after post-training</h2>
<table class="data"><thead><tr><th>metric</th><th>baseline</th><th>post-trained</th><th>gain</th><th>cost per point gained</th></tr></thead><tbody>${rows || '<tr><td colspan="5">eval.json lists no metrics</td></tr>'}</tbody></table>
<p class="note">Total spend counted by eval: ${usd(e.usd)}${e.usd_per_point !== null ? ` · cost per point (from eval.json): ${usd(e.usd_per_point)}` : ""}. A point is 0.01 of a 0–1 metric (e.g. Spearman 0.80 → 0.81), or 1 of a metric reported on a 0–100 scale.</p></section>`;
}

function rerankHtml(d: ReportData): string {
  const r = d.eval?.rerank;
  if (!r || r.rows.length === 0) return "";
  const rows = r.rows
    .map(
      (x) =>
        `<tr title="${escapeHtml(x.id)}"><td>${escapeHtml(x.reranker)}</td><td class="num">${x.depth ?? "all"}</td><td class="num">${fmt(x.ndcg10, 4)}</td><td class="num">${fmt(x.map, 4)}</td><td class="num">${fmt(x.mrr10, 4)}</td><td class="num">${usd(x.usd_per_query)}</td><td class="num">${fmt(x.ms_per_query, 1)}</td><td class="num">${x.queries}${x.incomplete ? " (cap reached)" : ""}</td></tr>`,
    )
    .join("");
  return `<section><h2>Rerankers side by side</h2>
<table class="data"><thead><tr><th>reranker</th><th>depth</th><th>nDCG@10</th><th>MAP</th><th>MRR@10</th><th>USD / query</th><th>ms / query</th><th>queries</th></tr></thead><tbody>${rows}</tbody></table>
<p class="note">${escapeHtml(r.file)}: ${r.queries} queries. Each reranker reorders the embedder's top <em>depth</em> candidates; cascade = cross-encoder, then the LLM over its top 20. Milliseconds are the reranker's own time.</p></section>`;
}

function judgesHtml(d: ReportData): string {
  const j = d.judges;
  if (!j || j.judges.length === 0) return "";
  const head = j.judges.map((x) => `<th>${escapeHtml(x)}</th>`).join("");
  const rows = j.judges
    .map((a, i) => `<tr><td title="${escapeHtml(j.ids[a] ?? "")}">${escapeHtml(a)}</td>${j.judges.map((_, k) => `<td class="num">${fmt(j.matrix[i]?.[k] ?? null, 2)} <span class="note">(${j.n[i]?.[k] ?? 0})</span></td>`).join("")}</tr>`)
    .join("");
  const per = j.judges
    .map((a) => {
      const p = j.per_judge[a];
      return p ? `<tr><td>${escapeHtml(a)}</td><td class="num">${p.chains}</td><td class="num">${fmt(p.in_order_rate, 3)}</td><td class="num">${fmt(p.mean_kendall, 3)}</td></tr>` : "";
    })
    .join("");
  const c = j.counts;
  return `<section><h2>Judges (${escapeHtml(j.mode)})</h2>
<table class="data"><thead><tr><th>agreement</th>${head}</tr></thead><tbody>${rows}</tbody></table>
<table class="data"><thead><tr><th>judge</th><th>chains</th><th>in order</th><th>mean Kendall</th></tr></thead><tbody>${per}</tbody></table>
<p class="note">${c.judged ?? 0} kept chains judged; ${c.escalated ?? 0} escalated to the LLM, ${c.llm_judged ?? 0} judged by it (${usd(j.llm_usd)}${j.llm_cap_usd !== null ? ` of a ${usd(j.llm_cap_usd)} cap` : ""}${c.llm_skipped_budget ? `, ${c.llm_skipped_budget} left to the cross-encoder at the cap` : ""}); ${c.rejected_by_judge ?? 0} rejected by a judge. Agreement = share of chains (count in brackets) on which two judges give the same in-order verdict.</p></section>`;
}

/** Renders the report as one self-contained HTML document (chart.js inlined, no external requests). */
export function renderReportHtml(d: ReportData): string {
  const c = d.counts;
  const kept = c.accepted + c.repaired;
  const bestIds = new Set(d.best.map((x) => x.id));
  const worst = d.worst.filter((x) => !bestIds.has(x.id));
  const costRows = [
    ["total spend", `${usd(d.cost.usd)} <span class="note">(from ${escapeHtml(d.cost.source)})</span>`],
    ["ledger.jsonl", usd(d.cost.ledger_usd)],
    ...Object.entries(d.cost.by_stage ?? {}).map(([stage, v]) => [`· ${escapeHtml(stage)} stage`, `${usd(v.usd)} <span class="note">(${v.calls} calls)</span>`]),
    ["run.json totals", usd(d.cost.run_json_usd)],
    ["sum of chains' usage", usd(d.cost.chains_usd)],
    ["kept chains (accepted + repaired)", String(d.cost.kept_chains)],
    ["cost per kept chain", `<b>${usd(d.cost.usd_per_kept_chain)}</b>`],
    ["cost per accepted chain (accepted only)", usd(d.cost.usd !== null && c.accepted > 0 ? d.cost.usd / c.accepted : null)],
  ]
    .map(([k, v]) => `<tr><th>${k}</th><td>${v}</td></tr>`)
    .join("");
  const thresholds = d.thresholds
    ? Object.entries(d.thresholds)
        .map(([k, v]) => `<code>${escapeHtml(k)}=${escapeHtml(String(v))}</code>`)
        .join(" ")
    : "";
  const notValidated = d.validated
    ? ""
    : `<p class="warn">This run has not been validated yet (no validated.jsonl): run <code>rankchain validate ${escapeHtml(d.run)}</code> for similarity curves, Spearman and the acceptance funnel.</p>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>rankchain report · ${escapeHtml(d.run)}</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
header{background:#1d2430;color:#fff;padding:16px 28px}header h1{margin:0;font-size:20px}header p{margin:4px 0 0;color:#c7cdd8}
main{max-width:1180px;margin:0 auto;padding:12px 28px 40px}
section{background:#fff;border:1px solid #e1e4ea;border-radius:8px;padding:14px 18px;margin:16px 0}
h2{font-size:16px;margin:0 0 10px}.grid{display:grid;grid-template-columns:1fr 1fr;gap:16px}
.chart{position:relative;height:300px}.kpis{display:flex;gap:12px;flex-wrap:wrap}
.kpi{flex:1;min-width:130px;background:#f6f7f9;border-radius:6px;padding:8px 12px}.kpi b{display:block;font-size:20px}
table{border-collapse:collapse;width:100%}td,th{padding:4px 8px;border-bottom:1px solid #eef0f3;text-align:left;vertical-align:top}
th{font-weight:600;color:#4a5568}.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.kv th{width:280px}.note{color:#6b7280;font-size:12px}.warn{background:#fff7e6;border:1px solid #f5d08a;padding:8px 12px;border-radius:6px}
.example{margin:10px 0 18px}.example .meta{margin:2px 0;color:#4a5568}.example tr.anchor td{background:#eef6ff}.example tr.dropped td{color:#9aa3af}
.tag{font-size:11px;background:#fde2e2;color:#9b1c1c;border-radius:4px;padding:0 4px}
.status.accepted{color:#137333;font-weight:600}.status.repaired{color:#9a6700;font-weight:600}.status.rejected{color:#b42318;font-weight:600}
.good{color:#137333}.bad{color:#b42318}code{background:#f1f3f6;border-radius:3px;padding:0 3px;font-size:12px}
@media (max-width:900px){.grid{grid-template-columns:1fr}}
</style></head><body>
<header><h1>rankchain report · ${escapeHtml(d.run)}</h1>
<p>embedder ${escapeHtml(d.embedder ?? "–")} · policy ${escapeHtml(d.policy ?? "–")} · generated ${escapeHtml(d.generated_at)}</p></header>
<main>
${notValidated}
<section><h2>Summary</h2><div class="kpis">
<div class="kpi">chains<b id="kpi-chains">${c.chains}</b></div>
<div class="kpi">accepted<b>${c.accepted}</b><span class="note">${pct(c.accepted, c.chains)}</span></div>
<div class="kpi">repaired<b>${c.repaired}</b><span class="note">${pct(c.repaired, c.chains)}</span></div>
<div class="kpi">rejected<b>${c.rejected}</b><span class="note">${pct(c.rejected, c.chains)}</span></div>
<div class="kpi">cost per kept chain<b>${usd(d.cost.usd_per_kept_chain)}</b><span class="note">${kept} kept</span></div>
</div>${thresholds ? `<p class="note">thresholds: ${thresholds}</p>` : ""}</section>
<section><div class="grid">
<div><h2>Similarity to the anchor by step</h2><div class="chart"><canvas id="chart-decay"></canvas></div>
<p class="note">Median and interquartile band over all validated chains (cut steps of repaired chains included); dashed: kept chains.</p></div>
<div><h2>Spearman (step vs distance; 1 = perfect drift)</h2><div class="chart"><canvas id="chart-spearman"></canvas></div>
<p class="note">${d.spearman.nulls} chain(s) without a defined Spearman (fewer than 2 steps or constant similarity).</p></div>
</div></section>
<section><div class="grid">
<div><h2>Acceptance funnel</h2><div class="chart"><canvas id="chart-funnel"></canvas></div></div>
<div><h2>Reasons (chains with each finding)</h2><div class="chart"><canvas id="chart-reasons"></canvas></div></div>
</div></section>
<section><h2>Cost</h2><table class="kv">${costRows}</table>
<p class="note">Generators: ${d.generators.map((g) => `${escapeHtml(g.name)} × ${g.chains}`).join(", ") || "–"}</p></section>
${judgesHtml(d)}
${evalHtml(d)}
${rerankHtml(d)}
${mineHtml(d.mine ?? null, escapeHtml)}
<section><h2>Best chains</h2>${d.best.map(exampleHtml).join("") || '<p class="note">no kept chains with a defined Spearman</p>'}</section>
<section><h2>Worst chains</h2>${worst.map(exampleHtml).join("") || '<p class="note">none besides the best ones</p>'}</section>
</main>
<script type="application/json" id="report-data">${jsonForScript(d)}</script>
<script>${chartJsSource()}</script>
<script>${CLIENT_SCRIPT}</script>
</body></html>
`;
}

/** Runs in the page: builds the four charts from the embedded data (no animation, so they render at once). */
const CLIENT_SCRIPT = String.raw`
(function () {
  var d = JSON.parse(document.getElementById("report-data").textContent);
  var charts = [];
  window.__rankchainCharts = charts;
  if (typeof Chart === "undefined") { document.body.insertAdjacentHTML("afterbegin", "<p>chart.js failed to load</p>"); return; }
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.font.family = "system-ui, sans-serif";
  var blue = "#2563eb", blueBand = "rgba(37,99,235,0.18)", green = "#16a34a", amber = "#d97706", red = "#dc2626", grey = "#64748b";
  function pts(bands, key) { return bands.map(function (b) { return { x: b.step, y: b[key] }; }); }
  charts.push(new Chart(document.getElementById("chart-decay"), {
    type: "line",
    data: { datasets: [
      { label: "25th percentile", data: pts(d.decay.all, "p25"), borderColor: "rgba(37,99,235,0.35)", borderWidth: 1, pointRadius: 0, fill: false },
      { label: "interquartile range (all)", data: pts(d.decay.all, "p75"), borderColor: "rgba(37,99,235,0.35)", borderWidth: 1, pointRadius: 0, backgroundColor: blueBand, fill: "-1" },
      { label: "median (all)", data: pts(d.decay.all, "median"), borderColor: blue, borderWidth: 2, pointRadius: 2, fill: false },
      { label: "median (kept)", data: pts(d.decay.kept, "median"), borderColor: green, borderWidth: 2, borderDash: [5, 4], pointRadius: 0, fill: false }
    ] },
    options: { parsing: true, scales: { x: { type: "linear", title: { display: true, text: "step" }, ticks: { precision: 0 } }, y: { title: { display: true, text: "cosine to anchor" } } },
      plugins: { tooltip: { mode: "index", intersect: false }, legend: { labels: { filter: function (item) { return item.datasetIndex !== 0; } } } } }
  }));
  var labels = [];
  for (var i = 0; i < d.spearman.all.length; i++) labels.push(d.spearman.edges[i].toFixed(1) + "…" + d.spearman.edges[i + 1].toFixed(1));
  charts.push(new Chart(document.getElementById("chart-spearman"), {
    type: "bar",
    data: { labels: labels, datasets: [
      { label: "all chains", data: d.spearman.all, backgroundColor: "rgba(100,116,139,0.55)", grouped: false, barPercentage: 1, categoryPercentage: 0.95 },
      { label: "kept chains", data: d.spearman.kept, backgroundColor: "rgba(22,163,74,0.75)", grouped: false, barPercentage: 0.6, categoryPercentage: 0.95 }
    ] },
    options: { scales: { x: { title: { display: true, text: "Spearman" } }, y: { beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: "chains" } } } }
  }));
  var c = d.counts;
  charts.push(new Chart(document.getElementById("chart-funnel"), {
    type: "bar",
    data: { labels: ["chains", "kept (accepted + repaired)", "accepted", "repaired", "rejected"], datasets: [
      { label: "chains", data: [c.chains, c.accepted + c.repaired, c.accepted, c.repaired, c.rejected], backgroundColor: [grey, blue, green, amber, red] }
    ] },
    options: { indexAxis: "y", plugins: { legend: { display: false } }, scales: { x: { beginAtZero: true, ticks: { precision: 0 } } } }
  }));
  charts.push(new Chart(document.getElementById("chart-reasons"), {
    type: "bar",
    data: { labels: d.reasons.map(function (r) { return r.kind; }), datasets: [
      { label: "chains", data: d.reasons.map(function (r) { return r.chains; }), backgroundColor: "rgba(220,38,38,0.7)" }
    ] },
    options: { indexAxis: "y", plugins: { legend: { display: false } }, scales: { x: { beginAtZero: true, ticks: { precision: 0 } } } }
  }));
  document.documentElement.setAttribute("data-charts-ready", String(charts.length));
})();
`;
