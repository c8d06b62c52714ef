/**
 * A farm of OpenAI-compatible inference servers (vLLM, SGLang, llama.cpp server, …) behind one
 * LanguageModel: `--base-url URL1,URL2,…`.
 *
 * Routing: each call goes to the healthy server with the fewest requests outstanding (ties: the one
 * that has been sent the fewest so far, then list order). Health: a server that fails a call with a
 * connection error, a timeout or a 5xx is taken out of rotation with exponential back-off (1 s,
 * 2 s, … 30 s by default); when its back-off has passed, a health check (GET {base}/models, any HTTP
 * answer below 500 counts as alive: not every server has that route) decides whether it comes back,
 * else the back-off doubles. If every server is down, the call goes to the one whose back-off ends
 * first (the orchestrator's retries then pace the run). The failing call's error is rethrown for
 * the orchestrator, which owns retries and the ledger, and its retry is routed elsewhere; a
 * connection failure while other servers are up is wrapped in a FarmMemberDownError (billed like
 * its cause) so that the circuit breaker counts only failures of the whole farm.
 */
import { FarmMemberDownError, ProviderCallError } from "../../errors.ts";
import type { ChatMessage, GenerateRequest, GenerateResult, JsonResponseFormat, LanguageModel, ModelCapabilities, ServerStats, TokenCount } from "../types.ts";
import { createOpenAICompatibleModel, type OpenAICompatibleModelSettings } from "./openai-compatible-model.ts";

/** requests: calls routed here; ok / failed: how they ended; downs: times taken out of rotation. */
export type FarmServerStats = ServerStats;

export interface ServerFarmOptions {
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  healthTimeoutMs?: number;
  /** Clock (tests). */
  now?: () => number;
  fetch?: typeof globalThis.fetch;
}

interface Member {
  url: string;
  model: LanguageModel;
  stats: FarmServerStats;
  downUntil: number;
  backoffMs: number;
  checking: Promise<void> | undefined;
}

/** Errors that say the server (not the request) is the problem. */
export function isServerFault(e: unknown): boolean {
  if (!(e instanceof ProviderCallError)) return false;
  return e.status === undefined || e.status >= 500;
}

export class ServerFarmModel implements LanguageModel {
  readonly provider = "openai-compatible" as const;
  readonly modelId: string;
  readonly capabilities: ModelCapabilities;
  private readonly members: Member[];
  private readonly initialBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly healthTimeoutMs: number;
  private readonly now: () => number;
  private readonly fetchImpl: typeof globalThis.fetch;

  constructor(urls: readonly string[], settings: Omit<OpenAICompatibleModelSettings, "baseURL">, options: ServerFarmOptions = {}) {
    if (urls.length === 0) throw new Error("a server farm needs at least one URL");
    this.members = urls.map((url) => ({
      url,
      model: createOpenAICompatibleModel({ ...settings, baseURL: url }),
      stats: { url, requests: 0, ok: 0, failed: 0, downs: 0, healthy: true, outstanding: 0, healthChecks: 0 },
      downUntil: 0,
      backoffMs: 0,
      checking: undefined,
    }));
    this.modelId = settings.model;
    this.capabilities = this.members[0]!.model.capabilities;
    this.initialBackoffMs = options.initialBackoffMs ?? 1000;
    this.maxBackoffMs = options.maxBackoffMs ?? 30_000;
    this.healthTimeoutMs = options.healthTimeoutMs ?? 2000;
    this.now = options.now ?? Date.now;
    this.fetchImpl = options.fetch ?? settings.fetch ?? globalThis.fetch;
  }

  serverStats(): FarmServerStats[] {
    return this.members.map((m) => ({ ...m.stats }));
  }

  async generate(request: GenerateRequest): Promise<GenerateResult> {
    const due = this.members.filter((m) => !m.stats.healthy && m.downUntil <= this.now());
    if (due.length > 0) await Promise.all(due.map((m) => this.check(m)));
    // choose and count in one synchronous step, so concurrent callers see each other
    const m = this.choose();
    m.stats.requests++;
    m.stats.outstanding++;
    try {
      const result = await m.model.generate(request);
      m.stats.ok++;
      if (!m.stats.healthy) this.markUp(m);
      return result;
    } catch (e) {
      m.stats.failed++;
      if (isServerFault(e) && !request.abortSignal?.aborted) {
        this.markDown(m);
        const up = this.members.filter((o) => o !== m && o.stats.healthy).length;
        if (up > 0 && e instanceof ProviderCallError && e.status === undefined) throw new FarmMemberDownError(m.url, up, e);
      }
      throw e;
    } finally {
      m.stats.outstanding--;
    }
  }

  countInputTokens(messages: ChatMessage[], options?: { responseFormat?: JsonResponseFormat | undefined }): Promise<TokenCount> {
    return this.members[0]!.model.countInputTokens(messages, options);
  }

  private markDown(m: Member): void {
    if (m.stats.healthy) {
      m.stats.healthy = false;
      m.stats.downs++;
      m.backoffMs = this.initialBackoffMs;
    } else {
      m.backoffMs = Math.min(this.maxBackoffMs, Math.max(this.initialBackoffMs, m.backoffMs * 2));
    }
    m.downUntil = this.now() + m.backoffMs;
  }

  private markUp(m: Member): void {
    m.stats.healthy = true;
    m.backoffMs = 0;
    m.downUntil = 0;
  }

  /** Health check of a server whose back-off has passed; concurrent callers share one check. */
  private check(m: Member): Promise<void> {
    m.checking ??= (async () => {
      m.stats.healthChecks++;
      const url = m.url.replace(/\/+$/, "") + "/models";
      try {
        const res = await this.fetchImpl(url, { method: "GET", signal: AbortSignal.timeout(this.healthTimeoutMs) });
        await res.body?.cancel();
        if (res.status < 500) this.markUp(m);
        else this.markDown(m);
      } catch {
        this.markDown(m);
      } finally {
        m.checking = undefined;
      }
    })();
    return m.checking;
  }

  private choose(): Member {
    const healthy = this.members.filter((m) => m.stats.healthy);
    if (healthy.length === 0) {
      return this.members.reduce((a, b) => (b.downUntil < a.downUntil ? b : a));
    }
    return healthy.reduce((a, b) =>
      b.stats.outstanding < a.stats.outstanding || (b.stats.outstanding === a.stats.outstanding && b.stats.requests < a.stats.requests) ? b : a,
    );
  }
}
