export * from "./types.ts";
export * from "./ledger.ts";
export * from "./estimate.ts";
