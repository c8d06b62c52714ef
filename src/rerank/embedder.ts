import { cosine } from "../embed/similarity.ts";
import type { Embedder } from "../embed/types.ts";
import { orderByScores, zeroUsage, type RerankResult, type Reranker } from "./types.ts";

/**
 * The bi-encoder as a reranker: cosine of each passage's embedding to the query's. The baseline
 * every other reranker is compared with, and the first stage whose top-`depth` they rerank.
 * A paid embedder (openai:…) spends through its own ledger; that spend is not seen here.
 */
export class EmbedderReranker implements Reranker {
  readonly kind = "embedder" as const;
  readonly id: string;
  constructor(
    private readonly embedder: Embedder,
    private readonly ownsEmbedder = false,
  ) {
    this.id = `embedder:${embedder.info.id}`;
  }

  async rerank(query: string, passages: readonly string[]): Promise<RerankResult> {
    const [q, ...ps] = await this.embedder.embed([query, ...passages]);
    const scores = ps.map((p) => cosine(q!, p));
    return { order: orderByScores(scores), scores, usage: zeroUsage() };
  }

  async dispose(): Promise<void> {
    if (this.ownsEmbedder) await this.embedder.dispose();
  }
}
