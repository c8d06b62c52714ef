/**
 * Measures what `rankchain estimate` assumes for models without a known tokenizer: UTF-8 bytes per
 * token of message contents, and the chat template's tokens per message, on the carried GGUF
 * models (SmolLM2-135M, Qwen2.5-Coder-0.5B and -1.5B) over the stepwise prompts of
 * examples/seeds.txt. Prints one row per model and the pooled figures.
 *
 *   npx tsx bench/bytes-per-token.ts
 */
import { join } from "node:path";
import { homedir } from "node:os";
import { existsSync } from "node:fs";
import { createLocalModel } from "../src/llm/local/index.ts";
import { loadPromptTemplate } from "../src/steering/prompt-templates.ts";
import { buildStepwiseRequest } from "../src/steering/prompt.ts";
import { readSeeds } from "../src/generate/seeds.ts";
import { PROJECT_ROOT } from "../src/config/paths.ts";

const dir = join(homedir(), ".cache/rankchain/models");
const models = ["SmolLM2-135M-Instruct.Q4_1.gguf", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"].filter((m) => existsSync(join(dir, m)));
const seeds = readSeeds(join(PROJECT_ROOT, "examples/seeds.txt"), { maxChars: 2000 }).seeds;
const template = loadPromptTemplate("stepwise", undefined);
const requests = seeds.flatMap((s) =>
  [0, 3, 7].map((k) => buildStepwiseRequest(template, { anchor: s.text, stepsSoFar: Array.from({ length: k }, () => s.text), totalSteps: 8, maxOutputTokens: 100 })),
);
let pooledBytes = 0;
let pooledTokens = 0;
for (const m of models) {
  const model = await createLocalModel({ model: join(dir, m), gpu: "off" });
  let bytes = 0, contentTokens = 0, chatTokens = 0, messages = 0;
  for (const r of requests) {
    chatTokens += (await model.countInputTokens(r.messages)).tokens;
    for (const msg of r.messages) {
      bytes += Buffer.byteLength(msg.content);
      contentTokens += (await model.countInputTokens([{ role: "user", content: msg.content }])).tokens - (await model.countInputTokens([{ role: "user", content: "" }])).tokens;
      messages++;
    }
  }
  for (const s of seeds) {
    pooledBytes += Buffer.byteLength(s.text);
    pooledTokens += (await model.countInputTokens([{ role: "user", content: s.text }])).tokens - (await model.countInputTokens([{ role: "user", content: "" }])).tokens;
  }
  console.log(`${m}: ${(bytes / contentTokens).toFixed(2)} bytes/token (prompt contents), template ${((chatTokens - contentTokens) / requests.length).toFixed(1)} tokens/request over ${requests.length} requests (${(messages / requests.length).toFixed(1)} messages each)`);
  await model.dispose?.();
}
console.log(`seed sentences, pooled over the models: ${(pooledBytes / pooledTokens).toFixed(2)} bytes/token`);
