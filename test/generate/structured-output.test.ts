/**
 * Issue 13: structured output that degrades gracefully. Loopback servers that mimic
 * llama-cpp-python (HTTP 500 on json_schema, json_object + schema honoured), one that drops
 * response_format entirely, and one that rejects every response_format; the run steps down once
 * (json_schema → json_object → prompt), records the mode in run.json and never retries a
 * rejected mode blindly. A ladder whose first item repeats the anchor loses that item only.
 */
import { join } from "node:path";
import { readFileSync, writeFileSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { runGenerate } from "../../src/generate/run.ts";
import { parseLadderItems, parseLadderResponse } from "../../src/steering/prompt.ts";
import { driftSentence, startOpenAIServer, type OpenAIServer } from "../servers/index.ts";
import { config, readJsonlFile, SEEDS, tmpDir, writeSeeds } from "./helpers.ts";

let server: OpenAIServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

const ladder = (input: string, out: string, baseUrl: string, extra: Record<string, unknown> = {}) =>
  config({ input, out, provider: "openai-compatible", model: "qwen2.5-coder-1.5b", baseUrl, steering: "ladder", steps: 4, maxOutputTokens: 400, concurrency: 2, ...extra });
const manifest = (out: string) => JSON.parse(readFileSync(join(out, "run.json"), "utf8"));
const anchorOf = (body: any): string => /<sentence>([\s\S]*?)<\/sentence>/.exec(body.messages.at(-1).content)![1]!;

describe("structured output feature detection (issue 13)", () => {
  it("llama-cpp-python: json_schema → HTTP 500 once, then json_object + schema for the rest of the run", async () => {
    server = await startOpenAIServer({ structuredOutput: "llama-cpp-python" });
    const dir = tmpDir();
    const out = join(dir, "run");
    const summary = await runGenerate(ladder(writeSeeds(dir, SEEDS.slice(0, 6)), out, server.baseURL));
    expect(summary.status).toBe("completed");
    const chains = readJsonlFile(join(out, "chains.jsonl"));
    expect(chains).toHaveLength(6);
    for (const c of chains) expect(c.steps).toHaveLength(4);
    const reqs = server.requestsTo("/v1/chat/completions");
    const rejected = reqs.filter((r) => r.body.response_format?.type === "json_schema");
    // at most the calls already in flight when the first 500 came back; never retried unchanged
    expect(rejected.length).toBeGreaterThanOrEqual(1);
    expect(rejected.length).toBeLessThanOrEqual(2);
    expect(reqs).toHaveLength(6 + rejected.length);
    const later = reqs.filter((r) => r.body.response_format?.type === "json_object");
    expect(later).toHaveLength(6);
    expect(later[0]!.body.response_format.schema.properties.steps.minItems).toBe(4);
    const m = manifest(out);
    expect(m.structured_output.mode).toBe("json_object");
    expect(m.structured_output.changes).toHaveLength(1);
    expect(m.structured_output.changes[0]).toMatchObject({ from: "json_schema", to: "json_object" });
    expect(m.structured_output.changes[0].reason).toMatch(/Input should be 'text' or 'json_object'/);
    // the rejected attempts are not charged
    const ledger = readJsonlFile<{ type: string }>(join(out, "ledger.jsonl"));
    expect(ledger.filter((e) => e.type === "charge")).toHaveLength(6);
  });

  it("--resume starts in the mode the run settled on: no json_schema request is made again", async () => {
    server = await startOpenAIServer({ structuredOutput: "llama-cpp-python" });
    const dir = tmpDir();
    const out = join(dir, "run");
    const input = writeSeeds(dir, SEEDS.slice(0, 5));
    await runGenerate(ladder(input, out, server.baseURL, { limit: 2, concurrency: 1 }));
    expect(server.requestsTo("/v1/chat/completions").filter((r) => r.body.response_format?.type === "json_schema")).toHaveLength(1);
    server.clearRequests();
    const summary = await runGenerate(ladder(input, out, server.baseURL, { resume: true, concurrency: 1 }));
    expect(summary.status).toBe("completed");
    const reqs = server.requestsTo("/v1/chat/completions");
    expect(reqs).toHaveLength(3);
    expect(reqs.every((r) => r.body.response_format?.type === "json_object")).toBe(true);
    expect(manifest(out).structured_output.changes).toHaveLength(1);
    expect(readJsonlFile(join(out, "chains.jsonl"))).toHaveLength(5);
  });

  it("a server that drops response_format entirely: the chatty answer's JSON is extracted, no retries", async () => {
    server = await startOpenAIServer({ structuredOutput: "ignore" });
    const dir = tmpDir();
    const out = join(dir, "run");
    const summary = await runGenerate(ladder(writeSeeds(dir, SEEDS.slice(0, 3)), out, server.baseURL));
    expect(summary.status).toBe("completed");
    const chains = readJsonlFile(join(out, "chains.jsonl"));
    for (const c of chains) expect(c.steps).toHaveLength(4);
    expect(server.requestsTo("/v1/chat/completions")).toHaveLength(3);
  });

  it("a server that ignores response_format and answers prose without JSON: the run steps down to the schema in the prompt", async () => {
    server = await startOpenAIServer({
      responder: (req) => {
        const anchor = anchorOf(req.body);
        const user: string = req.body.messages.at(-1).content;
        if (/JSON Schema/.test(user)) return { type: "text", text: JSON.stringify({ steps: [1, 2, 3, 4].map((k) => driftSentence(anchor, k)) }) };
        return { type: "text", text: `I think a good chain would start by changing a word of "${anchor.slice(0, 10)}" and go on from there.` };
      },
    });
    const dir = tmpDir();
    const out = join(dir, "run");
    const summary = await runGenerate(ladder(writeSeeds(dir, SEEDS.slice(0, 3)), out, server.baseURL, { concurrency: 1 }));
    expect(summary.status).toBe("completed");
    for (const c of readJsonlFile(join(out, "chains.jsonl"))) expect(c.steps).toHaveLength(4);
    const m = manifest(out);
    expect(m.structured_output).toMatchObject({ mode: "prompt", changes: [{ from: "json_schema", to: "prompt" }] });
    expect(m.structured_output.changes[0].reason).toMatch(/free text/);
    // chain 1: prose, then its one retry with the schema in the prompt; chains 2 and 3: one call each
    expect(server.requestsTo("/v1/chat/completions")).toHaveLength(4);
  });

  it("a server that rejects every response_format (400): json_schema → json_object → prompt, the schema spelled out in the prompt", async () => {
    server = await startOpenAIServer({
      responder: (req) => {
        if (req.body.response_format) return { type: "error", status: 400, message: `Unrecognized request argument supplied: response_format (${req.body.response_format.type})` };
        const anchor = anchorOf(req.body);
        return { type: "text", text: "```json\n" + JSON.stringify({ steps: [1, 2, 3, 4].map((k) => driftSentence(anchor, k)) }) + "\n```" };
      },
    });
    const dir = tmpDir();
    const out = join(dir, "run");
    const summary = await runGenerate(ladder(writeSeeds(dir, SEEDS.slice(0, 4)), out, server.baseURL, { concurrency: 1 }));
    expect(summary.status).toBe("completed");
    for (const c of readJsonlFile(join(out, "chains.jsonl"))) expect(c.steps).toHaveLength(4);
    const reqs = server.requestsTo("/v1/chat/completions");
    expect(reqs).toHaveLength(4 + 2);
    const plain = reqs.filter((r) => r.body.response_format === undefined);
    expect(plain).toHaveLength(4);
    expect(plain[0]!.body.messages.at(-1).content).toMatch(/valid against this JSON Schema:\n\{"type":"object"/);
    expect(manifest(out).structured_output).toMatchObject({
      mode: "prompt",
      changes: [
        { from: "json_schema", to: "json_object" },
        { from: "json_object", to: "prompt" },
      ],
    });
  });
});

describe("ladder items (issue 13)", () => {
  it("a first item that repeats the anchor is dropped, the good steps after it are kept", async () => {
    server = await startOpenAIServer({
      responder: (req) => {
        const anchor = anchorOf(req.body);
        const n = req.body.response_format.json_schema.schema.properties.steps.minItems as number;
        const extra = anchor.includes("library") ? 1 : 0; // one chain gets n+1 items, the others n
        return { type: "json", value: { steps: [anchor, ...Array.from({ length: n - 1 + extra }, (_, i) => driftSentence(anchor, i + 1))] } };
      },
    });
    const dir = tmpDir();
    const out = join(dir, "run");
    await runGenerate(ladder(writeSeeds(dir, SEEDS.slice(0, 3)), out, server.baseURL, { minSteps: 1 }));
    const chains = readJsonlFile<{ anchor: string; steps: string[]; cleaning?: string[]; truncated?: { reason: string } }>(join(out, "chains.jsonl"));
    expect(chains).toHaveLength(3);
    for (const c of chains) {
      expect(c.steps[0]).not.toBe(c.anchor);
      expect(c.cleaning).toContain("1:dropped a copy of the anchor");
      if (c.anchor.includes("library")) {
        expect(c.steps).toHaveLength(4);
        expect(c.truncated).toBeUndefined();
      } else {
        expect(c.steps).toHaveLength(3);
        expect(c.truncated?.reason).toBe("too-few-steps");
      }
    }
  });

  it("parseLadderItems repairs common shapes", () => {
    expect(parseLadderItems('["a", "b"]', 2)).toEqual(["a", "b"]);
    expect(parseLadderItems('{"sentences": ["a", "b"]}', 2)).toEqual(["a", "b"]);
    expect(parseLadderItems('{"steps": [{"sentence": "a"}, {"text": "b"}]}', 2)).toEqual(["a", "b"]);
    expect(parseLadderItems('{"1": "a", "2": "b"}', 2)).toEqual(["a", "b"]);
    expect(parseLadderItems("Here you go:\n1. a\n2. b\n", 2)).toEqual(["a", "b"]);
    expect(parseLadderItems('{"steps": ["x", "a", "b"]}', 2)).toEqual(["x", "a", "b"]);
    expect(parseLadderResponse('{"steps": ["x", "a", "b"]}', 2)).toEqual(["x", "a"]);
    expect(parseLadderItems('{"steps": "nope"}', 2)).toBeUndefined();
    expect(parseLadderItems('{"steps": [1, 2]}', 2)).toBeUndefined();
    expect(parseLadderItems("just prose", 2)).toBeUndefined();
  });
});

describe("resume after a step-down (issue 15: nothing paid for is requested again)", () => {
  it("a chain whose call was paid in json_schema before another chain made the run step down is served from responses.jsonl", async () => {
    // a server that takes json_schema: every call of the first process is paid in that mode
    server = await startOpenAIServer({ structuredOutput: "openai" });
    const dir = tmpDir();
    const out = join(dir, "run");
    const input = writeSeeds(dir, SEEDS.slice(0, 3));
    await runGenerate(ladder(input, out, server.baseURL, { concurrency: 1 }));
    const paid = server.requestsTo("/v1/chat/completions").length;
    expect(paid).toBe(3);
    // the process died after chain 2's call was paid but before its record was written, and
    // another chain had made the run step down to json_object
    const lines = readFileSync(join(out, "chains.jsonl"), "utf8").trim().split("\n");
    const dropped = JSON.parse(lines[1]!).id as string;
    writeFileSync(join(out, "chains.jsonl"), [lines[0], lines[2]].join("\n") + "\n");
    const m = manifest(out);
    m.structured_output = { mode: "json_object", changes: [{ from: "json_schema", to: "json_object", reason: "planted" }] };
    writeFileSync(join(out, "run.json"), JSON.stringify(m, null, 2));
    server.clearRequests();
    const summary = await runGenerate(ladder(input, out, server.baseURL, { resume: true, concurrency: 1 }));
    expect(summary.status).toBe("completed");
    expect(server.requestsTo("/v1/chat/completions")).toHaveLength(0);
    const chains = readJsonlFile<{ id: string; steps: string[] }>(join(out, "chains.jsonl"));
    expect(chains.map((c) => c.id)).toContain(dropped);
    expect(chains.find((c) => c.id === dropped)!.steps).toHaveLength(4);
    const charges = readJsonlFile<{ type: string }>(join(out, "ledger.jsonl")).filter((e) => e.type === "charge");
    expect(charges).toHaveLength(3);
  });
});
