import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readSeeds } from "../../src/generate/seeds.ts";
import { ConfigError } from "../../src/errors.ts";

const dir = mkdtempSync(join(tmpdir(), "rankchain-seeds-"));
function file(name: string, content: string | Buffer): string {
  const p = join(dir, name);
  writeFileSync(p, content);
  return p;
}

function expectConfigError(fn: () => unknown, pattern: RegExp): void {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as Error).message).toMatch(pattern);
    return;
  }
  throw new Error("expected a ConfigError");
}

describe("readSeeds", () => {
  it("reads text, skips blank lines, reports duplicates, gives stable ids", () => {
    const p = file("a.txt", "First seed.\n\n  Second seed.  \r\nFirst seed.\n");
    const r = readSeeds(p);
    expect(r.format).toBe("text");
    expect(r.seeds.map((s) => s.text)).toEqual(["First seed.", "Second seed."]);
    expect(r.seeds.map((s) => s.line)).toEqual([1, 3]);
    expect(r.duplicates).toEqual([{ line: 4, firstLine: 1 }]);
    expect(r.blankLines).toBe(1);
    expect(readSeeds(p).seeds[0]!.id).toBe(r.seeds[0]!.id);
    expect(r.seeds[0]!.id).not.toBe(r.seeds[1]!.id);
    expect(r.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it("reads JSONL with a text field", () => {
    const p = file("a.jsonl", '{"text":"One."}\n{"text":"Two.","extra":1}\n');
    expect(readSeeds(p).seeds.map((s) => s.text)).toEqual(["One.", "Two."]);
  });

  it("rejects invalid UTF-8 with file:line", () => {
    const p = file("bad.txt", Buffer.concat([Buffer.from("ok line\n"), Buffer.from([0x41, 0xff, 0xfe, 0x0a])]));
    expectConfigError(() => readSeeds(p), /bad\.txt:2: invalid UTF-8/);
  });

  it("rejects an over-long line with file:line", () => {
    const p = file("long.txt", "short\n" + "x".repeat(50) + "\n");
    expectConfigError(() => readSeeds(p, { maxChars: 20 }), /long\.txt:2: .*50 characters.*limit is 20/);
  });

  it("rejects JSONL lines that are not JSON or lack text, naming the field", () => {
    expectConfigError(() => readSeeds(file("b.jsonl", '{"text":"ok"}\n{nope\n')), /b\.jsonl:2: invalid JSON/);
    expectConfigError(() => readSeeds(file("c.jsonl", '{"text":"ok"}\n{"txt":"x"}\n')), /c\.jsonl:2 \(field "text"\): expected a string/);
  });

  it("rejects an empty or missing file", () => {
    expectConfigError(() => readSeeds(file("empty.txt", "\n\n")), /no seeds/);
    expectConfigError(() => readSeeds(join(dir, "missing.txt")), /missing\.txt: cannot read input: ENOENT/);
  });
});
