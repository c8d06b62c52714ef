import type { LocalLanguageModel } from "../llm/local/local-model.ts";
import { delimit, loadPromptTemplate, renderTemplate, type PromptTemplate } from "../steering/prompt-templates.ts";
import { orderByScores, type RerankResult, type Reranker } from "./types.ts";

/**
 * A pointwise relevance judge for local models: for each (query, passage) the model is asked a
 * yes/no question and the score is log p(yes) − log p(no) of its first answer token, read from
 * the full next-token distribution (no sampling; several spellings — "yes", "Yes", " yes" — are
 * pooled by log-sum-exp). One forward pass per passage; costs no money but counts tokens.
 */
export class PointwiseYesNoReranker implements Reranker {
  readonly kind = "pointwise" as const;
  readonly id: string;
  private readonly template: PromptTemplate;
  private readonly yes: number[];
  private readonly no: number[];

  constructor(
    private readonly model: LocalLanguageModel,
    options: { template?: PromptTemplate; ownsModel?: boolean } = {},
  ) {
    this.template = options.template ?? loadPromptTemplate("rerank-pointwise");
    this.id = `pointwise:local/${model.modelId}`;
    this.yes = firstTokens(model, ["yes", "Yes", " yes", " Yes", "YES"]);
    this.no = firstTokens(model, ["no", "No", " no", " No", "NO"]);
    this.owns = options.ownsModel ?? false;
    if (this.yes.some((t) => this.no.includes(t))) throw new Error(`${model.modelId}: "yes" and "no" share a first token; pointwise scoring is not possible`);
  }
  private readonly owns: boolean;

  /** log p(yes) − log p(no) per passage, in input order. */
  async score(query: string, passages: readonly string[]): Promise<number[]> {
    const out: number[] = [];
    for (const p of passages) {
      const lp = await this.model.nextTokenLogProbs(renderTemplate(this.template, { query: delimit(query), passage: delimit(p) }));
      out.push(logSumExp(this.yes.map((t) => lp[t]!)) - logSumExp(this.no.map((t) => lp[t]!)));
    }
    return out;
  }

  async rerank(query: string, passages: readonly string[]): Promise<RerankResult> {
    const scores = await this.score(query, passages);
    return { order: orderByScores(scores), scores, usage: { usd: 0, inputTokens: 0, outputTokens: 0, calls: passages.length } };
  }

  async dispose(): Promise<void> {
    if (this.owns) await this.model.dispose();
  }
}

function firstTokens(model: LocalLanguageModel, spellings: string[]): number[] {
  const ids = new Set<number>();
  for (const s of spellings) {
    const t = model.tokenize(s);
    if (t.length > 0) ids.add(t[0]!);
  }
  return [...ids];
}

export function logSumExp(xs: readonly number[]): number {
  const m = Math.max(...xs);
  if (!Number.isFinite(m)) return m;
  let s = 0;
  for (const x of xs) s += Math.exp(x - m);
  return m + Math.log(s);
}
