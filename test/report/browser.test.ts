import { existsSync, readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { writeReport } from "../../src/report/index.ts";
import { buildValidatedRun } from "./fixture.ts";

const CHROMIUM = "/usr/bin/chromium";
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`test/report/browser: skipped — ${CHROMIUM} not found (run scripts/setup-chromium.sh)`);

describe.skipIf(!haveChromium)("report.html in headless Chromium", () => {
  it("renders all four charts with data, no page errors, no network, escaped examples", async () => {
    const { chromium } = await import("playwright-core");
    const dir = await buildValidatedRun();
    const { path } = await writeReport(dir);
    const html = readFileSync(path, "utf8");
    expect(html).not.toMatch(/<script[^>]+src=/i);
    expect(html).not.toMatch(/<link[^>]+href=/i);

    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      const errors: string[] = [];
      const requests: string[] = [];
      const dialogs: string[] = [];
      page.on("pageerror", (e) => errors.push(String(e)));
      page.on("console", (m) => {
        if (m.type() === "error") errors.push(m.text());
      });
      page.on("request", (r) => requests.push(r.url()));
      page.on("dialog", (d) => {
        dialogs.push(d.message());
        void d.dismiss();
      });
      const url = pathToFileURL(path).href;
      await page.goto(url, { waitUntil: "load" });
      await page.waitForSelector("html[data-charts-ready='4']", { timeout: 15_000 });

      // runs in the page (tsconfig has no DOM lib, so the page's types are spelled out here)
      interface PageCanvas {
        id: string;
        width: number;
        height: number;
        getContext(kind: "2d"): { getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray } } | null;
      }
      const charts = await page.evaluate(() =>
        (globalThis as unknown as { __rankchainCharts: { canvas: PageCanvas; data: { datasets: { data: unknown[] }[] } }[] }).__rankchainCharts.map((c) => {
          const ctx = c.canvas.getContext("2d")!;
          const { width, height } = c.canvas;
          const px = ctx.getImageData(0, 0, width, height).data;
          let painted = 0;
          for (let i = 3; i < px.length; i += 4) if (px[i]! > 0) painted++;
          return { id: c.canvas.id, width, height, painted, points: c.data.datasets.map((d) => d.data.length) };
        }),
      );
      expect(charts.map((c) => c.id)).toEqual(["chart-decay", "chart-spearman", "chart-funnel", "chart-reasons"]);
      for (const c of charts) {
        expect(c.width).toBeGreaterThan(100);
        expect(c.points.every((n) => n > 0)).toBe(true);
        // drawn pixels: axes, labels and the data marks cover a visible share of the canvas
        expect(c.painted / (c.width * c.height)).toBeGreaterThan(0.02);
      }
      // the decay chart has one point per step (up to 9) in each band line
      expect(charts[0]!.points[2]).toBe(9);

      const pwned = await page.evaluate(() => (globalThis as unknown as { __pwned?: boolean }).__pwned === true);
      expect(pwned).toBe(false);
      expect(dialogs).toEqual([]);
      const worstText = await page.locator("section", { hasText: "Worst chains" }).innerText();
      expect(worstText).toContain('<script>window.__pwned = true; alert("x")</script>');
      const evalText = await page.locator("section", { hasText: "Before / after" }).innerText();
      expect(evalText).toContain("stsb_spearman");
      expect(evalText).toMatch(/\+1\.0800/);
      // $0.20 for 1.08 points (metric already in points)
      expect(evalText).toContain("$0.1852");

      expect(errors).toEqual([]);
      expect(requests.filter((r) => r !== url)).toEqual([]);

      if (process.env.RANKCHAIN_REPORT_SCREENSHOT) {
        await page.screenshot({ path: process.env.RANKCHAIN_REPORT_SCREENSHOT, fullPage: true });
      }
    } finally {
      await browser.close();
    }
  });
});

