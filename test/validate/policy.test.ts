import { describe, expect, it } from "vitest";
import { CosineLshIndex, ChainValidator, type Policy } from "../../src/validate/index.ts";
import { record, sentences, vec, walk } from "./helpers.ts";

const anchor = "The quiet harbour sees boats at dawn every day.";

function run(policy: Policy, steps: string[], vectors: Float32Array[], minSteps = 3, holdoutIndex?: CosineLshIndex<number>) {
  const v = new ChainValidator({ embedderId: "test:table", policy, minSteps, holdoutIndex });
  return v.validate(record("c1", anchor, steps), vectors);
}

describe("policies on a chain with an inversion at step 5 of 8", () => {
  const steps = sentences(8);
  const vectors = walk([1, 2, 3, 4, 6, 5, 7, 8]);

  it("strict rejects it", () => {
    const out = run("strict", steps, vectors);
    expect(out.validation.status).toBe("rejected");
    expect(out.validation.reasons).toContain("inversion@6");
    expect(out.validation.inversions).toBe(1);
    expect(out.validation.steps_kept).toBe(0);
    expect(out.steps).toEqual(steps);
  });

  it("repair cuts it before the first violation", () => {
    const out = run("repair", steps, vectors);
    // step 5 (angle 6θ) is not an inversion, but step 6 (5θ) is
    expect(out.validation.status).toBe("repaired");
    expect(out.validation.truncated_at).toBe(6);
    expect(out.validation.steps_kept).toBe(5);
    expect(out.steps).toEqual(steps.slice(0, 5));
    expect(out.validation.dropped_steps).toEqual(steps.slice(5));
    expect(out.validation.sims_to_anchor).toHaveLength(5);
    expect(out.validation.spearman).toBe(1);
    expect(out.validation.inversions).toBe(0);
    expect(out.validation.reasons).toContain("truncated@6");
    expect(out.validation.reasons).toContain("inversion@6");
  });

  it("repair rejects when fewer than --min-steps would remain", () => {
    const out = run("repair", steps, vectors, 6);
    expect(out.validation.status).toBe("rejected");
    expect(out.validation.reasons).toContain("too-short-after-repair@6");
    expect(out.steps).toEqual(steps);
  });

  it("lenient accepts it and records the reason", () => {
    const out = run("lenient", steps, vectors);
    expect(out.validation.status).toBe("accepted");
    expect(out.validation.reasons).toContain("inversion@6");
    expect(out.validation.steps_kept).toBe(8);
    expect(out.validation.spearman).toBeLessThan(1);
  });
});

describe("each hard defect is a reason, rejects under strict and is cut under repair", () => {
  const base = sentences(6);
  const clean = walk([1, 2, 3, 4, 5, 6]);
  const cases: { name: string; reason: string; steps: string[]; vectors: Float32Array[]; holdout?: Float32Array }[] = [
    { name: "refusal", reason: "refusal@5", steps: base.map((s, i) => (i === 4 ? "I'm sorry, but I cannot help with that request." : s)), vectors: clean },
    { name: "boilerplate", reason: "boilerplate@4", steps: base.map((s, i) => (i === 3 ? "Sure, here you go: the harbour sees boats." : s)), vectors: clean },
    {
      name: "instruction echo",
      reason: "instruction-echo@4",
      steps: base.map((s, i) => (i === 3 ? "Rewrite the sentence below using different words but the same meaning." : s)),
      vectors: clean,
    },
    { name: "markup debris (escaped tag)", reason: "markup@4", steps: base.map((s, i) => (i === 3 ? `&lt;nobody&gt;${s}` : s)), vectors: clean },
    { name: "markup debris (spaced tag)", reason: "markup@5", steps: base.map((s, i) => (i === 4 ? `< sentence>${s}</sentence>` : s)), vectors: clean },
    {
      name: "append creep",
      reason: "append@5",
      steps: base.map((s, i) => (i === 4 ? `${base[3]!.replace(/\.$/, "")} while the tide comes slowly in.` : s)),
      vectors: clean,
    },
    {
      name: "a step unrelated to the sentence it rewrites",
      reason: "unrelated@5",
      steps: base,
      vectors: clean.map((v, i) => (i === 5 ? vec(1.25, Math.PI) : v)),
    },
    {
      name: "empty",
      reason: "empty@5",
      steps: base.map((s, i) => (i === 4 ? "" : s)),
      vectors: clean.map((v, i) => (i === 5 ? new Float32Array(8) : v)),
    },
    {
      name: "near-duplicate step",
      reason: "near-duplicate-steps@5~4",
      steps: base.map((s, i) => (i === 4 ? base[3]!.replace("boats", "boat") : s)),
      vectors: [...clean.slice(0, 5), vec(4 * 0.25 + 0.01), vec(6 * 0.25)],
    },
    // a wider walk (neighbours at cosine 0.92) so only step 4 itself is within 0.95 of the holdout sentence
    { name: "holdout leak", reason: "leak@4", steps: base, vectors: walk([1, 2, 3, 4, 5, 6], 0.4), holdout: walk([4], 0.4)[1]! },
  ];
  for (const c of cases) {
    it(c.name, () => {
      let holdout: CosineLshIndex<number> | undefined;
      if (c.holdout) {
        holdout = new CosineLshIndex<number>({ dimensions: 8 });
        holdout.add(17, c.holdout);
        holdout.add(18, vec(2.5, 2));
      }
      const strict = run("strict", c.steps, c.vectors, 3, holdout);
      expect(strict.validation.status).toBe("rejected");
      expect(strict.validation.reasons).toContain(c.reason);
      const repair = run("repair", c.steps, c.vectors, 3, holdout);
      const at = Number(/@(\d+)/.exec(c.reason)![1]);
      expect(repair.validation.status).toBe("repaired");
      expect(repair.validation.truncated_at).toBe(at);
      expect(repair.steps).toHaveLength(at - 1);
      const lenient = run("lenient", c.steps, c.vectors, 3, holdout);
      expect(lenient.validation.status).toBe("accepted");
      expect(lenient.validation.reasons).toContain(c.reason);
      if (c.holdout) expect(strict.validation.leaks).toEqual([{ step: 4, cosine: 1, holdout_line: 17 }]);
    });
  }

  it("a leaking anchor cannot be repaired", () => {
    const holdout = new CosineLshIndex<number>({ dimensions: 8 });
    holdout.add(3, vec(0));
    const out = run("repair", base, clean, 3, holdout);
    expect(out.validation.status).toBe("rejected");
    expect(out.validation.reasons).toContain("leak@0");
  });

  it("a cycle is only flagged by default (star-shaped chains have them) and cuts with hardKinds: [\"cycle\"]", () => {
    // the same cone walk as the metrics test: step 6 returns next to step 1 while similarity to the anchor still falls
    const vs = [vec(0), ...[0, 1.2, 2.4, 3.6, 4.8, 6.0].map((psi, k) => vec(1.2 + 0.01 * k, psi))];
    const soft = new ChainValidator({ embedderId: "t", policy: "repair", minSteps: 3 }).validate(record("c", "anchor.", base), vs);
    expect(soft.validation.status).toBe("accepted");
    expect(soft.validation.reasons).toContain("cycle@6~1");
    const hard = new ChainValidator({ embedderId: "t", policy: "repair", minSteps: 3, hardKinds: ["cycle"] }).validate(record("c", "anchor.", base), vs);
    expect(hard.validation.status).toBe("repaired");
    expect(hard.validation.truncated_at).toBe(6);
  });

  it("--soft demotes a hard kind to a flag", () => {
    const steps = base.map((s, i) => (i === 3 ? "Sure, here you go: the harbour sees boats." : s));
    const v = new ChainValidator({ embedderId: "t", policy: "strict", minSteps: 3, softKinds: ["boilerplate"] });
    const out = v.validate(record("c", anchor, steps), clean);
    expect(out.validation).toMatchObject({ status: "accepted", reasons: ["boilerplate@4"] });
  });

  it("soft flags never reject", () => {
    const steps = [...base];
    steps[2] = steps[2]! + " and then a very long digression about ropes, nets, gulls, tides and the weather forecast for the coming week".repeat(2);
    const out = run("strict", steps, clean);
    expect(out.validation.reasons).toEqual(["length-outlier@3"]);
    expect(out.validation.status).toBe("accepted");
  });

  it("too-short chains are rejected unless lenient", () => {
    expect(run("strict", base.slice(0, 2), clean.slice(0, 3)).validation).toMatchObject({ status: "rejected", reasons: ["too-short"] });
    expect(run("repair", base.slice(0, 2), clean.slice(0, 3)).validation.status).toBe("rejected");
    expect(run("lenient", base.slice(0, 2), clean.slice(0, 3)).validation).toMatchObject({ status: "accepted", reasons: ["too-short"] });
  });
});

describe("duplicate chains across the corpus", () => {
  it("keeps the first, rejects later copies (strict/repair), flags them under lenient", () => {
    for (const policy of ["strict", "repair", "lenient"] as const) {
      const v = new ChainValidator({ embedderId: "t", policy, minSteps: 3 });
      const vs = walk([1, 2, 3, 4]);
      const other = [vec(0, 0).map((x, i) => (i === 3 ? 1 : 0)) as Float32Array, ...walk([1, 2, 3, 4]).slice(1).map((x) => new Float32Array([x[0]! * 0, 0, 0, x[0]!, x[1]!, 0, 0, 0]))];
      const a = v.validate(record("a", anchor, sentences(4)), vs);
      const b = v.validate(record("b", anchor + " Again.", sentences(4, "bay")), vs);
      const c = v.validate(record("c", "Another anchor entirely.", sentences(4, "field")), other);
      expect(a.validation.status).toBe("accepted");
      expect(b.validation.reasons).toContain("duplicate-chain~a");
      expect(b.validation.duplicate_of).toEqual({ id: "a", cosine: 1 });
      expect(b.validation.status).toBe(policy === "lenient" ? "accepted" : "rejected");
      expect(c.validation.reasons.filter((r) => r.startsWith("duplicate-chain"))).toEqual([]);
    }
  });

  it("a rejected chain does not block a later good copy", () => {
    const v = new ChainValidator({ embedderId: "t", policy: "strict", minSteps: 3 });
    const bad = v.validate(record("bad", anchor, ["I'm sorry, I can't help with that.", ...sentences(3)]), walk([1, 2, 3, 4]));
    const good = v.validate(record("good", anchor, sentences(4)), walk([1, 2, 3, 4]));
    expect(bad.validation.status).toBe("rejected");
    expect(good.validation.status).toBe("accepted");
  });
});
