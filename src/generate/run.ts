import { join } from "node:path";
import { readFileSync } from "node:fs";
import { BudgetLedger, type Ledger } from "../budget/ledger.ts";
import { PgLedger } from "../budget/pg-ledger.ts";
import type { StageTotals } from "../budget/types.ts";
import { BudgetExceededError, InterruptedError, NoUsableChainsError, ProviderUnreachableError, RankchainError } from "../errors.ts";
import { batchPrice, loadPriceTable, resolvePrice, type ModelPrice } from "../config/prices.ts";
import { AnthropicBatchClient, OpenAIBatchClient } from "../llm/batch/index.ts";
import { BatchModel, type BatchProgress } from "./batch-model.ts";
import { PROJECT_ROOT } from "../config/paths.ts";
import { redactUrl } from "../config/env.ts";
import type { GenerateConfig } from "../config/run-config.ts";
import type { LanguageModel } from "../llm/types.ts";
import { createLanguageModel } from "../llm/create.ts";
import { openAppenders, openRunDir, RUN_FILES, writeManifest, hashJson, type RunManifest, type RunStatus } from "../store/run-dir.ts";
import type { ChainRecord } from "../store/chain-record.ts";
import { loadPromptTemplate, type PromptTemplate } from "../steering/prompt-templates.ts";
import { ChainGenerator, type CfgStepBuilder, type StructuredOutputRecord } from "./generator.ts";
import { STRUCTURED_OUTPUT_MODES, type StructuredOutputMode } from "../llm/types.ts";
import { readSeeds, type SeedFile } from "./seeds.ts";
import { formatShard, inShard, parseShard } from "./shard.ts";

export interface GenerateHooks {
  /** Called once before generation starts (seeds read, run dir ready). */
  onStart?: (info: { total: number; alreadyDone: number; capUsd: number | undefined; spentUsd: number; seedFile: SeedFile }) => void;
  onChainDone?: (info: { record: ChainRecord; done: number; total: number; spentUsd: number }) => void;
  onRetry?: (info: { chainId: string; attempt: number; delayMs: number; error: unknown }) => void;
  onChainFailed?: (info: { id: string; line: number; error: unknown }) => void;
  /** Inject a model (tests, bench); default builds one from the config. */
  model?: LanguageModel;
  /** --mode batch: each status poll of a batch, and each submission. */
  onBatchProgress?: (p: BatchProgress) => void;
  onBatchSubmit?: (info: { id: string; requests: number }) => void;
  /** --mode batch: quiet time before an incomplete wave is submitted anyway (default 2 s). */
  batchGatherMs?: number;
  /** Signals: first abort drains (no new calls), second aborts calls in flight. */
  drainSignal?: AbortSignal;
  abortSignal?: AbortSignal;
}

export interface GenerateSummary {
  out: string;
  status: RunStatus;
  manifest: RunManifest;
  chainsWrittenNow: number;
}

const VERSION = (JSON.parse(readFileSync(join(PROJECT_ROOT, "package.json"), "utf8")) as { version: string }).version;

async function loadCfgBuilder(version: number | undefined): Promise<{ builder: CfgStepBuilder; template: PromptTemplate }> {
  const cfg = await import("../steering/cfg.ts");
  const template = cfg.cfgTemplate(version);
  return { builder: (input) => cfg.buildCfgStepRequest({ ...input, template }), template };
}

/**
 * The generate job: reads seeds, resolves prices (a cap with an unknown price is an error), opens
 * or resumes the run directory, runs the chain generator under the budget ledger, and keeps
 * run.json current. Budget reached → BudgetExceededError after everything paid for is saved.
 */
export async function runGenerate(config: GenerateConfig, hooks: GenerateHooks = {}): Promise<GenerateSummary> {
  const started = Date.now();
  const seedFile = readSeeds(config.input, { maxChars: config.maxSeedChars });
  const limited = config.limit !== undefined ? seedFile.seeds.slice(0, config.limit) : seedFile.seeds;
  const shard = config.shard !== undefined ? parseShard(config.shard) : undefined;
  const seeds = limited.filter((s) => inShard(s.text, shard));

  const table = loadPriceTable(config.prices);
  const listPrice: ModelPrice | undefined = resolvePrice({
    table,
    provider: config.provider,
    model: config.model,
    priceInput: config.priceInput,
    priceOutput: config.priceOutput,
    required: config.maxUsd !== undefined,
  });
  // Batch APIs bill about half the online price; the ledger charges (and reserves) what is billed.
  const price = listPrice && config.mode === "batch" ? batchPrice(listPrice) : listPrice;

  let template: PromptTemplate;
  let cfgBuilder: CfgStepBuilder | undefined;
  if (config.steering === "cfg") {
    const cfg = await loadCfgBuilder(config.promptVersion);
    template = cfg.template;
    cfgBuilder = cfg.builder;
  } else {
    template = loadPromptTemplate(config.steering, config.promptVersion);
  }

  const fingerprint = {
    seeds_sha256: seedFile.sha256,
    provider: config.provider,
    model: config.model,
    // credentials in a URL (user:token@, ?key=) never reach run.json
    base_url: config.baseUrl ? redactUrl(config.baseUrl) : null,
    steering: config.steering,
    steps: config.steps,
    guidance: config.steering === "cfg" ? config.guidance : null,
    cfg_top_k: config.cfgTopK ?? null,
    prompt: template.name,
    prompt_version: template.version,
    prompt_hash: template.hash,
    max_output_tokens: config.maxOutputTokens,
    temperature: config.temperature,
    seed: config.seed ?? null,
    max_seed_chars: config.maxSeedChars,
    // merge compares fingerprints without this field: shards of one run differ only here
    shard: shard ? formatShard(shard) : null,
    ...(config.mode === "batch" ? { mode: "batch" } : {}),
    // only when not the default, so runs made before these settings existed still resume
    ...(config.oversample !== 1 ? { oversample: config.oversample } : {}),
    ...(config.stepRetries !== 2 ? { step_retries: config.stepRetries } : {}),
    ...(!config.driftRules ? { drift_rules: false } : {}),
    // flash attention rounds differently: a --resume must decode the same way
    ...(config.deterministic ? { deterministic: true } : {}),
  };
  const state = await openRunDir({ dir: config.out, resume: config.resume, fingerprint });
  const online = hooks.model ?? (await createLanguageModel(config));
  let batchModel: BatchModel | undefined;
  if (config.mode === "batch") {
    const settings = { model: config.model, baseURL: config.baseUrl, timeoutMs: config.timeoutMs };
    const client = config.provider === "anthropic" ? new AnthropicBatchClient(settings) : new OpenAIBatchClient(settings);
    batchModel = await BatchModel.open(online, client, join(config.out, RUN_FILES.batches), {
      pollMs: config.pollSeconds * 1000,
      gatherMs: hooks.batchGatherMs ?? 2000,
      onProgress: hooks.onBatchProgress,
      onSubmit: hooks.onBatchSubmit,
    });
  }
  const model: LanguageModel = batchModel ?? online;
  const pendingAtProvider = batchModel?.pendingKeys();
  const ledger: Ledger = config.ledger
    ? await PgLedger.open({
        url: config.ledger,
        budgetId: config.budgetId,
        capUsd: config.maxUsd,
        mirrorPath: join(config.out, RUN_FILES.ledger),
        // a batch's requests stay reserved while the provider holds them (the 24 h window), so a
        // killed batch process's reservations wait for its --resume instead of being settled
        ...(config.mode === "batch"
          ? { leaseMs: 25 * 3600_000, keepOpen: (key: string) => pendingAtProvider !== undefined && pendingAtProvider.has(key) && !state.responses.has(key) }
          : {}),
      })
    : await BudgetLedger.open(join(config.out, RUN_FILES.ledger), config.maxUsd, {
        // calls an earlier process submitted in a batch still running keep their reservation
        keepOpen: (key) => pendingAtProvider !== undefined && pendingAtProvider.has(key) && !state.responses.has(key),
        ...(config.mode === "batch" ? { firstCallAlone: false } : {}),
      });
  const { chains, responses } = await openAppenders(config.out);

  const remaining = seeds.filter((s) => !state.completed.has(s.id));
  const doneBefore = seeds.length - remaining.length;
  let done = doneBefore;
  let truncated = [...state.completed.values()].filter((c) => c.truncated).length;
  let stepCount = [...state.completed.values()].reduce((n, c) => n + c.steps.length, 0);
  // usable data: a chain with at least --min-steps steps (default min(3, --steps)), as validate keeps
  const minSteps = config.minSteps ?? Math.min(3, config.steps);
  const usability = { empty: 0, short: 0, usable: 0 };
  const truncationReasons = new Map<string, number>();
  const countChain = (c: ChainRecord) => {
    if (c.steps.length === 0) usability.empty++;
    else if (c.steps.length < minSteps) usability.short++;
    else usability.usable++;
    if (c.truncated) truncationReasons.set(c.truncated.reason, (truncationReasons.get(c.truncated.reason) ?? 0) + 1);
  };
  for (const c of state.completed.values()) countChain(c);
  const createdAt = state.previous?.created_at ?? new Date().toISOString();

  const manifest = (status: RunStatus, generatorWarnings: unknown[], reused: number, message?: string): RunManifest => {
    const t = ledger.totals();
    return {
      rankchain_version: VERSION,
      created_at: createdAt,
      updated_at: new Date().toISOString(),
      status,
      fingerprint,
      fingerprint_hash: hashJson(fingerprint).slice(0, 16),
      // keys never enter the config: they are read from the environment at request time
      config: { ...config, ...(config.baseUrl ? { baseUrl: redactUrl(config.baseUrl) } : {}), ...(config.ledger ? { ledger: redactUrl(config.ledger) } : {}), resolved_prompt: `${template.name}.v${template.version}` },
      totals: {
        seeds: seeds.length,
        chains_done: done,
        chains_truncated: truncated,
        chains_empty: usability.empty,
        chains_short: usability.short,
        chains_usable: usability.usable,
        min_steps: minSteps,
        steps: stepCount,
        usd: Math.round(t.spentUsd * 1e9) / 1e9,
        reserved_usd: Math.round(t.reservedUsd * 1e9) / 1e9,
        input_tokens: t.inputTokens,
        output_tokens: t.outputTokens,
        calls: t.calls,
        released_attempts: t.released,
        over_billed: { calls: t.overBilled.calls, usd: Math.round(t.overBilled.usd * 1e9) / 1e9 },
        by_stage: roundStages(t.byStage),
        cached_responses_reused: reused,
        elapsed_s: Math.round((Date.now() - started) / 100) / 10,
      },
      warnings: generatorWarnings,
      versions: { node: process.version, rankchain: VERSION },
      ...(price ? { price: { ...price, table_as_of: table.as_of, unit: "USD per million tokens", ...(config.mode === "batch" ? { batch: true, list_price: listPrice } : {}) } } : {}),
      ...(batchModel ? { batches_submitted: batchModel.batchesSubmitted() } : {}),
      input: { path: config.input, seeds_in_file: seedFile.seeds.length, duplicates: seedFile.duplicates.length, blank_lines: seedFile.blankLines },
      ...(outcomeFailed.length ? { failed_chains: outcomeFailed } : {}),
      ...(model.serverStats ? { servers: model.serverStats().map(({ outstanding: _o, ...s }) => s) } : {}),
      ...(structuredOutput ? { structured_output: structuredOutput } : {}),
      ...(message ? { message } : {}),
    };
  };
  let outcomeFailed: { id: string; line: number; error: string }[] = [];
  let structuredOutput: StructuredOutputRecord | undefined = state.previous?.structured_output as StructuredOutputRecord | undefined;
  let outcomeStatusOverride: RunStatus | undefined;

  writeManifest(config.out, manifest("running", [], 0));
  hooks.onStart?.({ total: seeds.length, alreadyDone: doneBefore, capUsd: config.maxUsd, spentUsd: ledger.totals().spentUsd, seedFile });

  const generator = new ChainGenerator({
    model,
    steering: config.steering,
    steps: config.steps,
    template,
    cfgBuilder,
    guidance: config.guidance,
    cfgTopK: config.cfgTopK,
    maxOutputTokens: config.maxOutputTokens,
    temperature: config.temperature,
    seed: config.seed,
    oversample: config.oversample,
    stepRetries: config.stepRetries,
    driftRules: config.driftRules,
    // batch mode: every chain at once, so each step wave gathers into one batch
    concurrency: config.mode === "batch" ? Math.max(1, Math.min(remaining.length, 50_000)) : config.concurrency,
    price,
    ledger,
    chainsOut: chains,
    responsesOut: responses,
    cachedResponses: state.responses,
    retryPolicy: { maxRetries: config.maxRetries, initialDelayMs: 500, maxDelayMs: 8000, backoffFactor: 2, jitter: 0.25, maxRetryAfterMs: 60_000 },
    timeoutMs: config.timeoutMs,
    maxConnectionFailures: config.maxConnectionFailures,
    // feature detection is once per run: a resumed run starts where the server was found to be
    structuredMode: previousStructuredMode(state.previous),
    drainSignal: hooks.drainSignal,
    abortSignal: hooks.abortSignal,
    onRetry: hooks.onRetry,
    onChainFailed: (info) => {
      batchModel?.callerDone();
      hooks.onChainFailed?.(info);
    },
    onChainDone: (record) => {
      batchModel?.callerDone();
      done++;
      stepCount += record.steps.length;
      if (record.truncated) truncated++;
      countChain(record);
      hooks.onChainDone?.({ record, done, total: seeds.length, spentUsd: ledger.totals().spentUsd });
    },
  });

  let status: RunStatus = "failed";
  let message: string | undefined;
  let outcome: Awaited<ReturnType<ChainGenerator["run"]>> | undefined;
  try {
    batchModel?.setExpectedCallers(remaining.length);
    outcome = await generator.run(remaining);
    outcomeFailed = outcome.failed;
    if (outcome.structuredOutput) {
      const before = structuredOutput?.changes ?? [];
      structuredOutput = { mode: outcome.structuredOutput.mode, changes: [...before, ...outcome.structuredOutput.changes] };
    }
    if (outcome.failed.length > 0 && outcome.stoppedBy === "done") outcomeStatusOverride = "incomplete";
    // every chain of a finished run is empty or too short: nothing usable was produced
    if (outcome.stoppedBy === "done" && outcome.failed.length === 0 && done > 0 && usability.usable === 0) outcomeStatusOverride = "no_usable_chains";
    status =
      outcomeStatusOverride ??
      (outcome.stoppedBy === "budget"
        ? "budget_reached"
        : outcome.stoppedBy === "interrupted"
          ? "interrupted"
          : outcome.stoppedBy === "unreachable"
            ? "provider_unreachable"
            : "completed");
    if (outcome.budgetError) message = outcome.budgetError.message;
    if (outcome.unreachable) message = unreachableMessage(outcome.unreachable, config.out);
    if (status === "no_usable_chains") message = noUsableMessage(usability, minSteps, truncationReasons, config.out);
  } catch (e) {
    message = e instanceof Error ? e.message : String(e);
    if (hooks.abortSignal?.aborted) status = "interrupted";
    throw e;
  } finally {
    await chains.close();
    await responses.close();
    await ledger.close();
    writeManifest(config.out, manifest(status, outcome?.warnings ?? [], outcome?.cachedResponsesReused ?? 0, message));
    await model.dispose?.();
  }
  const final = manifest(status, outcome.warnings, outcome.cachedResponsesReused, message);
  if (status === "budget_reached" && outcome.budgetError) {
    const e = outcome.budgetError;
    throw new BudgetExceededError(
      `${e.message}. ${done}/${seeds.length} chains saved in ${config.out}; continue with --resume and a larger --max-usd`,
      e.capUsd,
      e.spentUsd,
      e.requestedUsd,
    );
  }
  if (status === "provider_unreachable" && outcome.unreachable) {
    throw new ProviderUnreachableError(`${message} (${done}/${seeds.length} chains saved)`, outcome.unreachable.consecutiveFailures);
  }
  if (status === "interrupted") throw new InterruptedError(`interrupted: ${done}/${seeds.length} chains saved in ${config.out}; continue with --resume`);
  if (outcome.failed.length > 0) {
    throw new RankchainError(
      `${outcome.failed.length} chain(s) failed (first: seed line ${outcome.failed[0]!.line}: ${outcome.failed[0]!.error}); ` +
        `${done}/${seeds.length} chains saved in ${config.out}; --resume retries the failed ones`,
    );
  }
  if (status === "no_usable_chains") throw new NoUsableChainsError(message ?? "no usable chains");
  return { out: config.out, status, manifest: final, chainsWrittenNow: outcome.written.length };
}

function unreachableMessage(u: { consecutiveFailures: number; lastError: string }, out: string): string {
  return (
    `provider unreachable: ${u.consecutiveFailures} consecutive connection failures (last: ${u.lastError}); ` +
    `everything paid for is saved in ${out}; --resume continues once the server answers`
  );
}

function noUsableMessage(u: { empty: number; short: number }, minSteps: number, reasons: Map<string, number>, out: string): string {
  const why = [...reasons.entries()].sort((a, b) => b[1] - a[1]).map(([r, n]) => `${r} ${n}`).join(", ");
  return (
    `no usable chains: ${u.empty} empty and ${u.short} shorter than --min-steps ${minSteps}` +
    (why ? ` (chains ended early: ${why})` : "") +
    `; the records are in ${out}/chains.jsonl — check the model and prompt (a model that copies its input ends chains as "duplicate")`
  );
}

function roundStages(stages: Record<string, StageTotals>): Record<string, StageTotals> {
  return Object.fromEntries(Object.entries(stages).map(([k, v]) => [k, { ...v, usd: Math.round(v.usd * 1e9) / 1e9 }]));
}

function previousStructuredMode(previous: RunManifest | undefined): StructuredOutputMode | undefined {
  const mode = (previous?.structured_output as { mode?: unknown } | undefined)?.mode;
  return STRUCTURED_OUTPUT_MODES.find((m) => m === mode);
}
