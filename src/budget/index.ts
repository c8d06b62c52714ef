export * from "./ledger.ts";
export * from "./estimate.ts";
