/**
 * The queue consumer. Delivery is at least once: the job object's lease makes a duplicate
 * delivery wait or drop, never compute twice at once. Domain refusals fail the job for good;
 * other errors go back to the queue, and after max_retries to the dead-letter queue, whose
 * consumer (this same handler) marks the job failed.
 */
import { ApiError, toApiError } from '../http/errors.ts';
import type { Report } from '../lib.ts';
import { buildArtifact } from '../lib.ts';
import { buildOnRunner } from './on-runner.ts';
import { runImport } from './run-import.ts';
import { jobStub } from './submit.ts';
import { JOB_ID_RE, type JobMessage } from './types.ts';

/** Dead-letter queues are named `…-dlq` or `…-dlq-<env>` (see wrangler.jsonc). */
export const isDeadLetterQueue = (queue: string) => /-dlq(-|$)/.test(queue);

/** Calls `report` only when progress moved by `step` or more, to spare the job object. */
export function throttled(report: Report, step = 0.1): Report {
  let last = -1;
  return async (f, stage) => {
    if (f - last < step && f < 1) return;
    last = f;
    await report(f, stage);
  };
}

export async function handleQueue(batch: MessageBatch<JobMessage>, env: Env): Promise<void> {
  const dead = isDeadLetterQueue(batch.queue);
  for (const msg of batch.messages) {
    const id = (msg.body as Partial<JobMessage> | null)?.job;
    if (typeof id !== 'string' || !JOB_ID_RE.test(id)) {
      console.warn(`dropping a message that names no job: ${JSON.stringify(msg.body)}`);
      msg.ack();
      continue;
    }
    const stub = jobStub(env, id);
    if (dead) {
      await stub.deadLetter();
      msg.ack();
      continue;
    }
    const claim = await stub.begin();
    if ('skip' in claim) {
      // busy: another delivery is computing it; look again later (done or missing: nothing to do).
      if (claim.skip === 'busy') msg.retry({ delaySeconds: 60 });
      else msg.ack();
      continue;
    }
    const report = throttled(async (f, stage) => {
      await stub.progress(claim.token, f, stage);
    });
    try {
      const result =
        claim.payload.kind === 'merge'
          ? claim.payload.gpu
            ? await buildOnRunner(env, claim.payload, report)
            : await buildArtifact(env.BLOBS, claim.payload, report)
          : await runImport(env, claim.payload, report);
      await stub.complete(claim.token, result);
      msg.ack();
    } catch (e) {
      const err = toApiError(e);
      if (!(e instanceof ApiError) && err.status >= 500) console.error(`job ${id} attempt ${claim.attempt}:`, e);
      await stub.fail(claim.token, err.toJSON(), err.retryable);
      if (err.retryable) msg.retry();
      else msg.ack();
    }
  }
}
