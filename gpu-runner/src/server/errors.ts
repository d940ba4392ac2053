/** Errors of the runner itself, and how any failure becomes the job error the gateway acts on. */
import { type gpu, LoraEdgeError } from '@lora-edge/shared';

/** Trouble with a code and whether another attempt (maybe on another runner) may succeed. */
export class RunnerError extends Error {
  override name = 'RunnerError';
  constructor(
    readonly code: string,
    message: string,
    readonly retryable: boolean,
  ) {
    super(message);
  }
}

/**
 * LoraEdgeError = the job's own data or request is bad (every runner would fail the same way):
 * not retryable. RunnerError says for itself. Anything else (out of memory, a backend fault) is
 * this runner's trouble: retryable.
 */
export function toJobError(e: unknown): gpu.JobError {
  const message = (e instanceof Error ? e.message : String(e)).slice(0, 2000);
  if (e instanceof RunnerError) return { code: e.code.slice(0, 64), message, retryable: e.retryable };
  if (e instanceof LoraEdgeError) return { code: e.code, message, retryable: false };
  if (e instanceof RangeError && /allocat|memory/i.test(message)) return { code: 'out_of_memory', message, retryable: true };
  return { code: 'runner_error', message, retryable: true };
}
