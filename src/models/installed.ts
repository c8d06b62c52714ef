import { existsSync, readdirSync, statSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { modelsDir } from "../config/paths.ts";
import { ConfigError } from "../errors.ts";
import { DEFAULT_MODEL_NAME, MODEL_REGISTRY, registryEntry, type ModelRegistryEntry } from "./registry.ts";

export interface InstalledModel {
  /** Registry name, or the file/directory name for anything else in the cache. */
  name: string;
  path: string;
  kind: "gguf" | "directory" | "file";
  sizeBytes: number;
  /** The registry entry this file belongs to, if any. */
  entry: ModelRegistryEntry | undefined;
  isDefault: boolean;
}

/**
 * Everything in <cache>/models: registry GGUFs (by file name), other GGUFs, and model
 * directories other parts put there (e.g. an ONNX embedder). Partial downloads are skipped.
 */
export function listModels(env: NodeJS.ProcessEnv = process.env): InstalledModel[] {
  const dir = modelsDir(env);
  if (!existsSync(dir)) return [];
  const out: InstalledModel[] = [];
  for (const name of readdirSync(dir).sort()) {
    if (name.startsWith(".")) continue;
    const path = join(dir, name);
    const st = statSync(path);
    const entry = MODEL_REGISTRY.find((e) => e.file === name);
    if (st.isDirectory()) {
      out.push({ name, path, kind: "directory", sizeBytes: directorySize(path), entry: undefined, isDefault: false });
    } else {
      out.push({
        name: entry?.name ?? name,
        path,
        kind: name.toLowerCase().endsWith(".gguf") ? "gguf" : "file",
        sizeBytes: st.size,
        entry,
        isDefault: entry?.name === DEFAULT_MODEL_NAME,
      });
    }
  }
  return out;
}

function directorySize(dir: string): number {
  let total = 0;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = statSync(p);
    total += st.isDirectory() ? directorySize(p) : st.size;
  }
  return total;
}

export type ResolvedModel =
  | { kind: "file"; path: string; entry: ModelRegistryEntry | undefined }
  | { kind: "remote"; uri: string };

const PULL_HINT = "run `rankchain models pull` to install the default model (or `rankchain models pull NAME`; `rankchain models list` shows what is installed)";

/**
 * `--model` for the local provider: a registry name ("default" or empty = the default entry) →
 * its file in the cache; an existing file path → itself; `hf:<repo>/<file>` (or an https URL) →
 * passed through for node-llama-cpp's resolver. Anything missing is a ConfigError that says how
 * to pull a model.
 */
export function resolveModelPath(ref: string | undefined, env: NodeJS.ProcessEnv = process.env): ResolvedModel {
  const value = ref === undefined || ref === "" || ref === "default" ? DEFAULT_MODEL_NAME : ref;
  if (/^(hf:|huggingface:|https?:\/\/)/.test(value)) return { kind: "remote", uri: value };
  const entry = registryEntry(value);
  if (entry) {
    const path = join(modelsDir(env), entry.file);
    if (!existsSync(path)) {
      const cmd = entry.name === DEFAULT_MODEL_NAME ? "rankchain models pull" : `rankchain models pull ${entry.name}`;
      throw new ConfigError(`local model "${entry.name}" is not installed (expected ${path}); run \`${cmd}\` to install it (\`rankchain models list\` shows what is installed)`);
    }
    return { kind: "file", path, entry };
  }
  const asPath = isAbsolute(value) ? value : resolve(value);
  if (existsSync(asPath) && statSync(asPath).isFile()) {
    return { kind: "file", path: asPath, entry: MODEL_REGISTRY.find((e) => asPath.endsWith("/" + e.file)) };
  }
  const inCache = join(modelsDir(env), value);
  if (existsSync(inCache) && statSync(inCache).isFile()) return { kind: "file", path: inCache, entry: MODEL_REGISTRY.find((e) => e.file === value) };
  throw new ConfigError(
    `local model "${value}" not found: it is not a registry name (${MODEL_REGISTRY.map((e) => e.name).join(", ")}), a GGUF file, or an hf:<repo>/<file> reference; ${PULL_HINT}`,
  );
}
