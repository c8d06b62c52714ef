import type { Reply, Responder, RecordedRequest } from "../servers/index.ts";

/** The passages of one listwise window as the loopback server sees them: "[k] <passage>text</passage>". */
export function windowPassages(req: RecordedRequest): { query: string; passages: string[] } {
  const messages = (req.body?.messages ?? []) as Array<{ role: string; content: string }>;
  const user = messages.filter((m) => m.role === "user").at(-1)?.content ?? "";
  const query = /<query>([\s\S]*?)<\/query>/.exec(user)?.[1] ?? "";
  const passages = [...user.matchAll(/\[(\d+)\] <passage>([\s\S]*?)<\/passage>/g)].map((m) => m[2]!);
  return { query, passages };
}

/** What the loopback server billed: every answered request with its reported usage. */
export interface BillingLog {
  calls: Array<{ inputTokens: number; outputTokens: number; windowSize: number }>;
}

/**
 * A RankGPT-speaking responder: answers each window with the permutation that sorts its passages
 * by `relevance(query, passage)` (higher first), reports fixed usage per call and logs it as billed.
 * `mangle` may rewrite the answer (malformed outputs).
 */
export function rankingResponder(opts: {
  relevance: (query: string, passage: string) => number;
  usage?: { inputTokens: number; outputTokens: number };
  billing?: BillingLog;
  mangle?: (answer: string, index: number) => string;
}): Responder {
  return (req, ctx): Reply => {
    const { query, passages } = windowPassages(req);
    const ids = passages.map((_, i) => i).sort((a, b) => opts.relevance(query, passages[b]!) - opts.relevance(query, passages[a]!) || a - b);
    let answer = ids.map((i) => `[${i + 1}]`).join(" > ");
    if (opts.mangle) answer = opts.mangle(answer, ctx.index);
    const usage = opts.usage ?? { inputTokens: 1000, outputTokens: 60 };
    opts.billing?.calls.push({ ...usage, windowSize: passages.length });
    return { type: "text", text: answer, usage };
  };
}

/** Relevance read from a "#N" tag in the passage text (N = relevance). */
export const taggedRelevance = (_q: string, p: string): number => Number(/#(\d+)/.exec(p)?.[1] ?? 0);
