import cliProgress from "cli-progress";
import type { PythonEvent } from "./python.ts";

/** Formats seconds as 1h02m, 3m05s or 12s. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (h > 0) return `${h}h${String(m).padStart(2, "0")}m`;
  if (m > 0) return `${m}m${String(s % 60).padStart(2, "0")}s`;
  return `${s}s`;
}

/** One line summarising a step event: loss, its parts, rate and ETA (also the bar's payload). */
export function describeStep(ev: PythonEvent): { loss: string; rate: string; eta: string } {
  const step = Number(ev.step);
  const total = Number(ev.total);
  const rate = typeof ev.steps_per_sec === "number" ? ev.steps_per_sec : undefined;
  const parts = ev.parts && typeof ev.parts === "object" ? Object.entries(ev.parts as Record<string, number>) : [];
  const loss =
    typeof ev.loss === "number"
      ? ev.loss.toFixed(4) + (parts.length > 1 ? ` (${parts.map(([k, v]) => `${k} ${Number(v).toFixed(4)}`).join(", ")})` : "")
      : String(ev.loss);
  return {
    loss,
    rate: rate === undefined ? "?" : rate >= 1 ? `${rate.toFixed(2)} it/s` : `${(1 / rate).toFixed(1)} s/it`,
    eta: rate ? formatDuration((total - step) / rate) : "?",
  };
}

/**
 * Renders the trainer's JSON events: a progress bar on stderr (step/total, rate, ETA, loss) and one
 * line per evaluation, checkpoint and export. Falls back to plain lines when stderr is not a TTY.
 */
export class TrainingProgressRenderer {
  private bar: cliProgress.SingleBar | undefined;
  private readonly tty: boolean;
  private lastPlain = 0;
  private total = 0;
  private value = 0;
  private payload: Record<string, string> = { rate: "?", eta_h: "?", loss: "?" };

  constructor(private readonly stream: NodeJS.WriteStream = process.stderr) {
    this.tty = Boolean(stream.isTTY);
  }

  private line(text: string): void {
    if (this.bar) this.bar.stop();
    this.stream.write(text + "\n");
    if (this.bar) this.bar.start(this.total, this.value, this.payload);
  }

  handle(ev: PythonEvent): void {
    switch (ev.event) {
      case "start": {
        const total = Number(ev.total);
        this.stream.write(
          `posttrain: ${ev.chains} chains, ${total} steps, ${ev.world_size} process(es) on ${ev.device}` +
            `${ev.precision && ev.precision !== "no" ? ` (${ev.precision})` : ""}\n`,
        );
        if (this.tty) {
          this.bar = new cliProgress.SingleBar(
            { stream: this.stream, format: "posttrain [{bar}] {value}/{total} | {rate} | ETA {eta_h} | loss {loss}", hideCursor: true },
            cliProgress.Presets.shades_classic,
          );
          this.total = total;
          this.value = Number(ev.step) || 0;
          this.bar.start(total, this.value, this.payload);
        }
        break;
      }
      case "step": {
        const d = describeStep(ev);
        if (this.bar) {
          this.value = Number(ev.step);
          this.payload = { rate: d.rate, eta_h: d.eta, loss: d.loss };
          this.bar.update(this.value, this.payload);
        } else {
          const now = Date.now();
          if (now - this.lastPlain > 5000 || ev.step === ev.total) {
            this.lastPlain = now;
            this.stream.write(`step ${ev.step}/${ev.total} | ${d.rate} | ETA ${d.eta} | loss ${d.loss}\n`);
          }
        }
        break;
      }
      case "eval": {
        const best = ev.best as { step: number; metric: string; value: number } | undefined | null;
        const shown: string[] = [];
        if (typeof ev.metric === "string" && typeof ev.value === "number") shown.push(`${ev.metric} ${ev.value.toFixed(2)} (selects)`);
        if (typeof ev.stsb_spearman === "number" && ev.metric !== "stsb_spearman") shown.push(`STS Spearman ${ev.stsb_spearman.toFixed(2)} (monitored)`);
        if (typeof ev.stsb_spearman === "number" && ev.metric === "stsb_spearman") shown[0] = `STS Spearman ${ev.stsb_spearman.toFixed(2)} (selects)`;
        this.line(`eval @ step ${ev.step}: ${shown.join(", ")}` + (best ? ` (best ${best.value.toFixed(2)} @ step ${best.step})` : ""));
        break;
      }
      case "export":
        if (ev.status === "done") this.line(`ONNX model: ${String(ev.onnx)}`);
        break;
      case "done":
        this.stop();
        break;
      default:
        break;
    }
  }

  stop(): void {
    if (this.bar) {
      this.bar.stop();
      this.bar = undefined;
    }
  }
}
