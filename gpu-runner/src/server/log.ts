/** Structured logs: one JSON object per line on stdout (ts, level, msg, then the fields: job, attempt, runner…). */
export type Level = 'debug' | 'info' | 'warn' | 'error';
export type Fields = Record<string, unknown>;

export interface Logger {
  log(level: Level, msg: string, fields?: Fields): void;
  child(fields: Fields): Logger;
}

export function jsonLogger(base: Fields = {}, write: (line: string) => void = (l) => process.stdout.write(l)): Logger {
  return {
    log(level, msg, fields = {}) {
      const entry: Fields = { ts: new Date().toISOString(), level, msg, ...base, ...fields };
      if (entry.error instanceof Error) entry.error = entry.error.message;
      write(`${JSON.stringify(entry)}\n`);
    },
    child: (fields) => jsonLogger({ ...base, ...fields }, write),
  };
}

export const silentLogger: Logger = { log() {}, child: () => silentLogger };
