/**
 * The queue consumers. The jobs queue is a push consumer that hands each job to a registered
 * runner over HTTP (local pull consumers do not exist in wrangler; pushing keeps local and
 * production the same). A message is acked once a runner accepted its attempt: from then on the
 * job's object watches the lease and re-enqueues a lost attempt. No runner free now: the message
 * comes back later (and after max_retries lands in the dead-letter queue). A malformed message
 * goes to the dead-letter queue with its reason at once, never around a retry loop.
 */
import { gpu } from '@lora-edge/shared';
import { type DispatchInfo, jobStub } from './job.ts';
import { poolStub } from './pool.ts';

/** Dead-letter queues are named `…-dlq` or `…-dlq-<env>` (see wrangler.jsonc). */
export const isDeadLetterQueue = (queue: string) => /-dlq(-|$)/.test(queue);

const HANDOFF_TIMEOUT_MS = 10_000;
const RETRY_DELAY_S = 1;

const log = (level: 'info' | 'warn' | 'error', msg: string, fields: Record<string, unknown>) =>
  console.log(JSON.stringify({ level, msg, ...fields }));

type Handoff = { accepted: true } | { accepted: false; code: string; message: string; retryable: boolean };

/** POSTs one attempt to one runner. Network trouble counts as a retryable refusal. */
export async function handOff(env: Env, url: string, job: gpu.RunnerJob): Promise<Handoff> {
  try {
    const res = await fetch(new URL('/v1/jobs', url), {
      method: 'POST',
      headers: { authorization: `Bearer ${env.RUNNER_TOKEN ?? ''}`, 'content-type': 'application/json' },
      body: JSON.stringify(job),
      signal: AbortSignal.timeout(HANDOFF_TIMEOUT_MS),
    });
    if (res.status === 202) return { accepted: true };
    const body = gpu.JobRefusedSchema.safeParse(await res.json().catch(() => null));
    if (body.success) return { accepted: false, ...body.data.error };
    return { accepted: false, code: `http_${res.status}`, message: `the runner answered ${res.status}`, retryable: true };
  } catch (e) {
    return { accepted: false, code: 'runner_unreachable', message: e instanceof Error ? e.message : String(e), retryable: true };
  }
}

async function dispatch(env: Env, msg: Message<unknown>, m: gpu.QueueMessage): Promise<void> {
  const job = jobStub(env, m.job);
  // Cast: the RPC result types cannot map the spec's free-form JSON (`unknown`) fields.
  const info = (await job.dispatchInfo(m.attempt)) as DispatchInfo;
  if (!info.ok) {
    // Done, failed, or a duplicate delivery of an attempt already placed: nothing to do.
    msg.ack();
    return;
  }
  const pool = poolStub(env);
  const refusals: string[] = [];
  let tooLarge = 0;
  for (const runner of await pool.candidates(info.need)) {
    const r = await handOff(env, runner.url, info.job);
    if (r.accepted) {
      if (!(await job.accepted(m.attempt, runner.id)))
        log('warn', 'attempt placed twice', { job: m.job, attempt: m.attempt, runner: runner.id });
      log('info', 'job placed', { job: m.job, attempt: m.attempt, runner: runner.id, queued_ms: info.queuedMs });
      msg.ack();
      return;
    }
    refusals.push(`${runner.id}: ${r.code}`);
    if (r.code === 'model_too_large') tooLarge++;
    if (!r.retryable) {
      // The job itself is bad: every runner would say the same.
      await job.fail({ code: r.code, message: r.message, status: 422 });
      msg.ack();
      return;
    }
  }
  const largest = await pool.largestModel(info.need.kind);
  if (largest.live > 0 && (tooLarge === largest.live || info.need.modelBytes > largest.bytes)) {
    await job.fail({
      code: 'model_too_large',
      message: `No GPU runner can hold this model (${info.need.modelBytes} bytes of weights; the largest runner holds ${largest.bytes}).`,
      status: 422,
    });
    msg.ack();
    return;
  }
  // Logged on the first delivery and every tenth after, not on every one-second retry.
  if (msg.attempts % 10 === 1) log('info', 'no runner free', { job: m.job, attempt: m.attempt, refusals, delivery: msg.attempts });
  msg.retry({ delaySeconds: RETRY_DELAY_S });
}

export async function handleQueue(batch: MessageBatch<unknown>, env: Env): Promise<void> {
  const dead = isDeadLetterQueue(batch.queue);
  await Promise.all(
    batch.messages.map(async (msg) => {
      const parsed = gpu.QueueMessageSchema.safeParse(msg.body);
      if (dead) {
        // Ours (with a reason) or Queues' own after max_retries deliveries: the job fails for good.
        const body = msg.body as { reason?: unknown } | null;
        const reason = typeof body?.reason === 'string' ? body.reason : 'no runner took the job after every delivery attempt';
        const id = parsed.success ? parsed.data.job : null;
        log('error', 'dead letter', { job: id, reason });
        await poolStub(env).deadLetter({ job: id, reason, detail: JSON.stringify(msg.body).slice(0, 1000) });
        if (id) await jobStub(env, id).fail({ code: 'gpu_job_failed', message: `The GPU job was dead-lettered: ${reason}`, status: 503 });
        msg.ack();
        return;
      }
      if (!parsed.success) {
        const reason = `malformed job message: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`;
        log('error', 'malformed message', { reason });
        // A body that cannot even be forwarded is recorded as a dead letter directly.
        await env.GPU_DLQ.send({ reason, body: msg.body }).catch(() =>
          poolStub(env).deadLetter({ job: null, reason, detail: String(msg.body).slice(0, 1000) }),
        );
        msg.ack();
        return;
      }
      try {
        await dispatch(env, msg, parsed.data);
      } catch (e) {
        log('error', 'dispatch failed', { job: parsed.data.job, error: e instanceof Error ? e.message : String(e) });
        msg.retry({ delaySeconds: RETRY_DELAY_S });
      }
    }),
  );
}
