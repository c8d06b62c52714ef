import { describe, expect, it } from "vitest";
import { ConfigError } from "../../src/errors.ts";
import { sessionOptions } from "../../src/embed/onnx-embedder.ts";

describe("onnxruntime session options", () => {
  const spin = (o: ReturnType<typeof sessionOptions>) => (o.extra as { session: { intra_op: { allow_spinning: string } } }).session.intra_op.allow_spinning;

  it("intra-op threads do not spin by default; RANKCHAIN_ORT_SPIN=1 turns spinning on", () => {
    expect(spin(sessionOptions(undefined, {}))).toBe("0");
    expect(spin(sessionOptions(undefined, { RANKCHAIN_ORT_SPIN: "1" }))).toBe("1");
    expect(() => sessionOptions(undefined, { RANKCHAIN_ORT_SPIN: "yes" })).toThrow(ConfigError);
    // a blank line copied from .env.example means unset, not an error
    expect(spin(sessionOptions(undefined, { RANKCHAIN_ORT_SPIN: "" }))).toBe("0");
  });

  it("threads: the caller's, else RANKCHAIN_ORT_THREADS, else onnxruntime's default", () => {
    expect(sessionOptions(3, { RANKCHAIN_ORT_THREADS: "1" }).intraOpNumThreads).toBe(3);
    expect(sessionOptions(undefined, { RANKCHAIN_ORT_THREADS: "1" }).intraOpNumThreads).toBe(1);
    expect(sessionOptions(undefined, { RANKCHAIN_ORT_THREADS: "zero" }).intraOpNumThreads).toBeUndefined();
    expect(sessionOptions(undefined, {}).intraOpNumThreads).toBeUndefined();
  });
});
