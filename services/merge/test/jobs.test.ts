/** The job object as a lock and a state machine, and the dead-letter consumer. */
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { handleQueue } from '../src/jobs/queue.ts';
import { jobStub } from '../src/jobs/submit.ts';
import type { JobMessage, MergePayload } from '../src/jobs/types.ts';
import { sha256Hex } from '../src/lib.ts';

async function newId(): Promise<string> {
  return sha256Hex(crypto.randomUUID());
}

const payload = (id: string): MergePayload => ({
  kind: 'merge',
  recipe_key: id,
  recipe: { base: id, adapters: [{ digest: id, weight: 1 }], method: 'linear', options: { exact: false }, output: 'adapter' },
  base: { id: 'stories260k', digest: id },
  adapters: [],
  method: 'linear',
});

function batch(queue: string, id: string, acks: string[]): MessageBatch<JobMessage> {
  const message = {
    id: 'm1',
    timestamp: new Date(),
    attempts: 1,
    body: { job: id },
    ack: () => acks.push('ack'),
    retry: () => acks.push('retry'),
  } as unknown as Message<JobMessage>;
  return { queue, messages: [message], ackAll: () => {}, retryAll: () => {} } as unknown as MessageBatch<JobMessage>;
}

describe('job object', () => {
  it('tells exactly one of many concurrent submitters to enqueue', async () => {
    const id = await newId();
    const stub = jobStub(env, id);
    const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => stub.submit(id, 'merge', payload(id), `tenant-${i % 2}`)));
    expect(answers.filter((a) => a.enqueue)).toHaveLength(1);
    expect(await stub.read('tenant-1')).toMatchObject({ id, state: 'queued' });
    expect(await stub.read('someone-else')).toBeNull();
  });

  it('leases the computation to one consumer at a time', async () => {
    const id = await newId();
    const stub = jobStub(env, id);
    await stub.submit(id, 'merge', payload(id), 'a');
    const first = await stub.begin();
    expect('token' in first).toBe(true);
    expect(await stub.begin()).toEqual({ skip: 'busy' });
    if (!('token' in first)) throw new Error('no lease');
    expect(await stub.progress('not-the-token', 0.5, 'x')).toBe(false);
    expect(await stub.progress(first.token, 0.5, 'half way')).toBe(true);
    expect(await stub.read('a')).toMatchObject({ state: 'running', progress: 0.5, stage: 'half way', attempts: 1 });
    expect(await stub.complete(first.token, { artifact: id })).toBe(true);
    expect(await stub.begin()).toEqual({ skip: 'done' });
    // Resubmitting a finished job joins it.
    expect((await stub.submit(id, 'merge', payload(id), 'b')).enqueue).toBe(false);
    expect((await stub.read('b'))?.history.map((h) => h.state)).toEqual(['queued', 'running', 'succeeded']);
  });

  it('requeues retryable failures, fails the rest, and lets the dead-letter queue end it', async () => {
    const id = await newId();
    const stub = jobStub(env, id);
    await stub.submit(id, 'merge', payload(id), 'a');
    const claim = await stub.begin();
    if (!('token' in claim)) throw new Error('no lease');
    await stub.fail(claim.token, { code: 'internal', message: 'R2 hiccup' }, true);
    expect(await stub.read('a')).toMatchObject({ state: 'queued', stage: 'waiting to retry' });

    const acks: string[] = [];
    await handleQueue(batch('lora-edge-merge-jobs-dlq-dev', id, acks), env);
    expect(acks).toEqual(['ack']);
    expect(await stub.read('a')).toMatchObject({ state: 'failed', error: { code: 'job_dead_lettered' } });

    const permanent = await newId();
    const p = jobStub(env, permanent);
    await p.submit(permanent, 'merge', payload(permanent), 'a');
    const c2 = await p.begin();
    if (!('token' in c2)) throw new Error('no lease');
    await p.fail(c2.token, { code: 'merge_invalid', message: 'no' }, false);
    expect(await p.read('a')).toMatchObject({ state: 'failed', error: { code: 'merge_invalid' } });
    // A failed job may be submitted again.
    expect((await p.submit(permanent, 'merge', payload(permanent), 'a')).enqueue).toBe(true);
  });

  it('fails a job whose inputs are gone without retrying, and drops messages that name no job', async () => {
    const id = await newId();
    const stub = jobStub(env, id);
    await stub.submit(id, 'merge', payload(id), 'a');
    const acks: string[] = [];
    await handleQueue(batch('lora-edge-merge-jobs-dev', id, acks), env);
    expect(acks).toEqual(['ack']);
    expect(await stub.read('a')).toMatchObject({ state: 'failed', attempts: 1, error: { code: 'input_missing' } });

    const junk: string[] = [];
    await handleQueue(batch('lora-edge-merge-jobs-dev', 'not-a-job', junk), env);
    expect(junk).toEqual(['ack']);
  });
});
