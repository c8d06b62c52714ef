export * from "./registry.ts";
export * from "./pull.ts";
export * from "./installed.ts";
