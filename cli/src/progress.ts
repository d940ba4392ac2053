/**
 * A progress bar on stderr. On a terminal it redraws in place; elsewhere (CI logs, pipes) it
 * prints a line at each 25% so logs stay short. Silent with --quiet.
 */
export interface Progress {
  advance(units: number): void;
  done(): void;
}

export function progressBar(label: string, total: number, opts: { quiet?: boolean; unit?: 'bytes' | 'items' } = {}): Progress {
  if (opts.quiet || total <= 0) return { advance() {}, done() {} };
  const tty = process.stderr.isTTY === true;
  const started = performance.now();
  let current = 0;
  let lastQuarter = -1;
  let lastDraw = 0;
  const fmt = (n: number) => (opts.unit === 'bytes' ? `${(n / 1e6).toFixed(1)} MB` : String(n));
  const draw = (final: boolean) => {
    const frac = Math.min(1, current / total);
    if (tty) {
      const now = performance.now();
      if (!final && now - lastDraw < 80) return;
      lastDraw = now;
      const width = 30;
      const filled = Math.round(frac * width);
      const secs = ((now - started) / 1000).toFixed(1);
      process.stderr.write(
        `\r${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(frac * 100).toFixed(0)}% ${fmt(current)}/${fmt(total)} ${secs}s`,
      );
      if (final) process.stderr.write('\n');
    } else {
      const quarter = Math.floor(frac * 4);
      if (quarter > lastQuarter) {
        lastQuarter = quarter;
        process.stderr.write(`${label}: ${(frac * 100).toFixed(0)}% (${fmt(current)}/${fmt(total)})\n`);
      }
    }
  };
  return {
    advance(units) {
      current += units;
      draw(false);
    },
    done() {
      current = total;
      draw(true);
    },
  };
}
