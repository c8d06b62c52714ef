export { extractSeeds, kCenterGreedy, type SeedsOptions, type SeedsProgress, type SeedsSummary, type SeedRecord } from "./extract.ts";
export { listSources, sourceKind, type SourceFile, type SourceKind } from "./sources.ts";
export { filterSentence, dedupKey, splitSentences, stripInlineMarkdown, type FilterReason } from "./text.ts";
export { createHashedEmbedder, trigramVector, BloomFilter } from "./sketch.ts";
