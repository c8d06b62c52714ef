/** Vector search shared by mine (and later validate and seeds): exact top-k and an HNSW index. */
export { exactTopK, normalizeRows, rowDot, type Neighbours } from "./topk.ts";
export { HnswIndex, DEFAULT_HNSW, type HnswOptions } from "./ann.ts";
