export * from "./chain-record.ts";
export * from "./jsonl.ts";
export * from "./run-dir.ts";
export * from "./json-file.ts";
