/**
 * The SDK client a batch adapter talks through: the key read at first use (option, then
 * environment), debug output redacted, and every SDK failure turned into a ProviderCallError that
 * names the endpoint. Shared by the OpenAI and Anthropic batch clients.
 */
import { loadApiKey } from "../../config/env.ts";
import { joinUrl, redactingLogger, toProviderCallError } from "../errors.ts";

export interface BatchClientSettings {
  model: string;
  baseURL?: string | undefined;
  apiKey?: string | undefined;
  timeoutMs?: number | undefined;
}

export interface SdkClientOptions {
  apiKey: string;
  baseURL?: string;
  maxRetries: number;
  timeout: number;
  logger: ReturnType<typeof redactingLogger>;
}

export class SdkConnection<C extends { baseURL: string }> {
  private client: C | undefined;

  constructor(
    private readonly provider: "openai" | "anthropic",
    private readonly envVar: string,
    private readonly settings: BatchClientSettings,
    private readonly make: (options: SdkClientOptions) => C,
  ) {}

  private sdk(): { client: C; apiKey: string } {
    const apiKey = loadApiKey({ apiKey: this.settings.apiKey, envVar: this.envVar, option: "the apiKey option", provider: this.provider });
    this.client ??= this.make({
      apiKey,
      ...(this.settings.baseURL !== undefined ? { baseURL: this.settings.baseURL } : {}),
      maxRetries: 2,
      timeout: this.settings.timeoutMs ?? 120_000,
      logger: redactingLogger([apiKey]),
    });
    return { client: this.client, apiKey };
  }

  /** Runs one SDK call; a failure becomes a ProviderCallError for `path`, with the key redacted. */
  async guarded<T>(path: string, fn: (client: C) => Promise<T>): Promise<T> {
    const { client, apiKey } = this.sdk();
    try {
      return await fn(client);
    } catch (e) {
      throw toProviderCallError(e, { url: joinUrl(client.baseURL, path), provider: this.provider, secrets: [apiKey] });
    }
  }
}
