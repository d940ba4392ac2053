import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { LoraEdgeError } from '@lora-edge/shared';

/**
 * Writes a folder atomically: everything goes to a hidden sibling, renamed into place only
 * once complete, so a crash or a bad input never leaves a half-written artifact at `out`.
 */
export async function writeDirAtomically(out: string, force: boolean, fill: (tmp: string) => Promise<void> | void): Promise<void> {
  const target = resolve(out);
  if (existsSync(target) && readdirSync(target).length > 0 && !force) {
    throw new LoraEdgeError('invalid_argument', `output ${out} exists and is not empty (pass --force to replace it)`);
  }
  const tmp = join(dirname(target), `.${basename(target)}.partial-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    await fill(tmp);
    rmSync(target, { recursive: true, force: true });
    renameSync(tmp, target);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** The same rule for a single file: written beside the target, renamed into place when complete. */
export async function writeFileAtomically(out: string, force: boolean, fill: (tmp: string) => Promise<void> | void): Promise<void> {
  const target = resolve(out);
  if (existsSync(target) && !force) throw new LoraEdgeError('invalid_argument', `output ${out} exists (pass --force to replace it)`);
  const tmp = join(dirname(target), `.${basename(target)}.partial-${process.pid}`);
  try {
    await fill(tmp);
    renameSync(tmp, target);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}
