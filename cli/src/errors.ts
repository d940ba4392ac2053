import { isLoraEdgeError } from '@lora-edge/shared';

/** Bad usage: exit code 2 with the message and a pointer to --help. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** Exit codes of the CLI contract: 0 ok, 1 runtime failure, 2 bad usage or bad input. */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_BAD_INPUT = 2;

const BAD_INPUT_ERRNO = new Set(['ENOENT', 'ENOTDIR', 'EISDIR', 'EEXIST', 'ENOTEMPTY']);

/** Maps any thrown value to an exit code and a message for stderr. */
export function describeFailure(e: unknown): { code: number; message: string } {
  if (e instanceof UsageError) return { code: EXIT_BAD_INPUT, message: `${e.message}\n(run with --help for usage)` };
  if (isLoraEdgeError(e)) return { code: EXIT_BAD_INPUT, message: `${e.message} [${e.code}]` };
  const errno = (e as NodeJS.ErrnoException)?.code;
  if (errno && BAD_INPUT_ERRNO.has(errno)) {
    const path = (e as NodeJS.ErrnoException).path;
    const what: Record<string, string> = {
      ENOENT: 'no such file or directory',
      ENOTDIR: 'not a directory',
      EISDIR: 'is a directory',
      EEXIST: 'already exists',
      ENOTEMPTY: 'directory is not empty',
    };
    return { code: EXIT_BAD_INPUT, message: `${path ?? ''}: ${what[errno]}` };
  }
  return { code: EXIT_FAILURE, message: e instanceof Error ? (e.stack ?? e.message) : String(e) };
}
