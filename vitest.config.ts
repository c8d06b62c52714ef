import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Model-backed suites load real weights; keep them from fighting over two cores.
    pool: "forks",
    maxWorkers: 2,
  },
});
