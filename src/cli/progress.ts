import cliProgress from "cli-progress";

/**
 * The progress bar on stderr: chains done/total, rate, ETA, and USD spent against the cap.
 * Silent under --quiet or when stderr is not a terminal (then one line per 10% instead).
 */
export interface ChainProgress {
  tick(done: number, spentUsd: number): void;
  stop(): void;
}

export function createChainProgress(opts: { total: number; initial: number; capUsd: number | undefined; quiet: boolean; label?: string }): ChainProgress {
  const cap = opts.capUsd !== undefined ? `$${opts.capUsd.toFixed(4)}` : "no cap";
  if (opts.quiet) return { tick: () => undefined, stop: () => undefined };
  if (!process.stderr.isTTY) {
    let lastDecile = -1;
    const start = Date.now();
    return {
      tick(done, spent) {
        const decile = Math.floor((done / Math.max(1, opts.total)) * 10);
        if (decile === lastDecile) return;
        lastDecile = decile;
        const rate = (done - opts.initial) / Math.max(0.001, (Date.now() - start) / 1000);
        process.stderr.write(`${opts.label ?? "chains"} ${done}/${opts.total}  ${rate.toFixed(2)}/s  $${spent.toFixed(4)} of ${cap}\n`);
      },
      stop() {},
    };
  }
  const bar = new cliProgress.SingleBar(
    {
      format: `${opts.label ?? "chains"} {bar} {value}/{total} | {rate}/s | ETA {eta_formatted} | $\{spent} of {cap}`,
      hideCursor: true,
      clearOnComplete: false,
      stream: process.stderr,
      etaBuffer: 20,
    },
    cliProgress.Presets.shades_classic,
  );
  const start = Date.now();
  bar.start(opts.total, opts.initial, { rate: "0.00", spent: "0.0000", cap });
  return {
    tick(done, spent) {
      const rate = (done - opts.initial) / Math.max(0.001, (Date.now() - start) / 1000);
      bar.update(done, { rate: rate.toFixed(2), spent: spent.toFixed(4), cap });
    },
    stop() {
      bar.stop();
    },
  };
}
