export * from "./types.ts";
export * from "./tokens.ts";
