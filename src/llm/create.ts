import type { GenerateConfig } from "../config/run-config.ts";
import { loadApiKey } from "../config/env.ts";
import type { LanguageModel } from "./types.ts";
import { splitBaseUrls } from "../config/run-config.ts";

/**
 * Builds the configured provider's adapter. Keys are checked here, before anything is spent, so a
 * missing key is exit 2 naming the variable; the adapters read them again at request time.
 */
export async function createLanguageModel(
  config: Pick<GenerateConfig, "provider" | "model" | "baseUrl" | "timeoutMs" | "gpu" | "seed"> &
    Partial<Pick<GenerateConfig, "concurrency" | "steering" | "steps" | "maxOutputTokens" | "maxSeedChars" | "deterministic">> & { cfgTopK?: number | undefined },
): Promise<LanguageModel> {
  switch (config.provider) {
    case "openai": {
      loadApiKey({ envVar: "OPENAI_API_KEY", provider: "openai" });
      const { createOpenAIModel } = await import("./openai/index.ts");
      return createOpenAIModel({ model: config.model, baseURL: config.baseUrl, timeoutMs: config.timeoutMs });
    }
    case "anthropic": {
      loadApiKey({ envVar: "ANTHROPIC_API_KEY", provider: "anthropic" });
      const { createAnthropicModel } = await import("./anthropic/index.ts");
      return createAnthropicModel({ model: config.model, baseURL: config.baseUrl, timeoutMs: config.timeoutMs });
    }
    case "openai-compatible": {
      const { createOpenAICompatibleModel, ServerFarmModel } = await import("./openai/index.ts");
      const baseURL = config.baseUrl ?? process.env.OPENAI_BASE_URL ?? "";
      const urls = splitBaseUrls(baseURL);
      if (urls.length > 1) return new ServerFarmModel(urls, { model: config.model, timeoutMs: config.timeoutMs });
      return createOpenAICompatibleModel({ model: config.model, baseURL, timeoutMs: config.timeoutMs });
    }
    case "local": {
      const { createLocalModel, maxPromptTokens } = await import("./local/index.ts");
      // --concurrency N: N chains decode in one context, one batch per step; each sequence is sized from the run's settings
      const { steering, steps, maxOutputTokens, maxSeedChars } = config;
      const sizing =
        steering !== undefined && steps !== undefined && maxOutputTokens !== undefined && maxSeedChars !== undefined
          ? { maxOutputTokens, maxPromptTokens: maxPromptTokens({ steering, steps, maxSeedChars, maxOutputTokens }) }
          : undefined;
      return createLocalModel({ model: config.model, gpu: config.gpu, seed: config.seed, cfgCandidates: config.cfgTopK, parallel: config.concurrency, sizing, deterministic: config.deterministic });
    }
  }
}
