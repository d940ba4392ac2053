import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { applyEvents, currentAttempt, markRunning, newJob, retryJob } from './job.ts';
import { JobEventsSchema, QueueMessageSchema, RunnerJobSchema, RunnerRegistrationSchema } from './protocol.ts';
import { admit, type Capacity, candidates, capacity, type RunnerEntry } from './runners.ts';

const ev = (attempt: number, runner: string, from: number, ids: number[], extra = {}) => ({ runner, attempt, from, ids, ...extra });

describe('job log: exactly-once tokens over at-least-once attempts', () => {
  it('appends in order, drops indices it holds, refuses gaps', () => {
    const job = newJob('job-00000001', 'generate', 10, 3, 0);
    expect(markRunning(job, 1, 'r1', 1)).toBe(true);
    expect(applyEvents(job, ev(1, 'r1', 0, [], {}), 1.5).appended).toEqual([]);
    expect(job.first_token_at).toBeUndefined();
    expect(applyEvents(job, ev(1, 'r1', 0, [5, 6]), 2)).toMatchObject({ appended: [5, 6], from: 0, current: true });
    expect(job.first_token_at).toBe(2);
    // A resent post overlapping what is held: only the new tail counts.
    expect(applyEvents(job, ev(1, 'r1', 1, [6, 7]), 3)).toMatchObject({ appended: [7], from: 2 });
    // A gap: nothing appended, the runner learns `next` from the job.
    expect(applyEvents(job, ev(1, 'r1', 5, [9]), 4)).toMatchObject({ appended: [], from: 3, current: true });
    expect(job.ids).toEqual([5, 6, 7]);
  });

  it('fences off a lost attempt and resumes the next after the held tokens', () => {
    const job = newJob('job-00000002', 'generate', 10, 3, 0);
    markRunning(job, 1, 'r1', 0);
    applyEvents(job, ev(1, 'r1', 0, [1, 2, 3]), 1);
    expect(retryJob(job, { code: 'runner_lost', message: 'silent' }, 2)).toBe('retry');
    expect(currentAttempt(job)).toMatchObject({ n: 2, resumed_at_token: 3, state: 'queued' });
    expect(job.avoid).toEqual(['r1']);
    // The dead runner's late post is refused; the new runner continues.
    expect(applyEvents(job, ev(1, 'r1', 3, [99]), 3).current).toBe(false);
    expect(markRunning(job, 2, 'r2', 3)).toBe(true);
    expect(markRunning(job, 2, 'r2', 3)).toBe(false);
    const out = applyEvents(job, ev(2, 'r2', 3, [4, 5], { done: { finish_reason: 'length', prompt_tokens: 1 } }), 4);
    expect(out).toMatchObject({ appended: [4, 5], ended: true });
    expect(job.status).toBe('done');
    expect(job.ids).toEqual([1, 2, 3, 4, 5]);
    // The final post repeated (its reply was lost) is answered as current, changing nothing.
    const again = applyEvents(job, ev(2, 'r2', 3, [4, 5], { done: { finish_reason: 'length', prompt_tokens: 1 } }), 5);
    expect(again).toMatchObject({ appended: [], current: true });
  });

  it('lets a first post that overtakes the acceptance start the attempt, for its runner only', () => {
    const job = newJob('job-00000005', 'generate', 4, 3, 0);
    expect(applyEvents(job, ev(1, 'r1', 0, [7]), 1)).toMatchObject({ appended: [7], current: true });
    expect(currentAttempt(job)).toMatchObject({ state: 'running', runner: 'r1' });
    expect(markRunning(job, 1, 'r1', 2)).toBe(false); // the late acceptance changes nothing
    expect(applyEvents(job, ev(1, 'r2', 1, [8]), 3).current).toBe(false);
  });

  it('passes progress on when it moves, and forgets it when an attempt is lost', () => {
    const job = newJob('job-00000006', 'merge', 0, 3, 0);
    markRunning(job, 1, 'r1', 0);
    const p = { fraction: 0.5, stage: 'fusing' };
    expect(applyEvents(job, ev(1, 'r1', 0, [], { progress: p }), 1).progress).toEqual(p);
    expect(applyEvents(job, ev(1, 'r1', 0, [], { progress: { ...p } }), 2).progress).toBeUndefined();
    expect(job.progress).toEqual(p);
    retryJob(job, { code: 'runner_lost', message: '' }, 3);
    expect(job.progress).toBeUndefined();
  });

  it('exhausts after max attempts; a non-retryable error fails at once', () => {
    const a = newJob('job-00000003', 'generate', 4, 2, 0);
    expect(retryJob(a, { code: 'x', message: 'x' }, 1)).toBe('retry');
    expect(retryJob(a, { code: 'x', message: 'x' }, 2)).toBe('exhausted');
    const b = newJob('job-00000004', 'generate', 4, 5, 0);
    markRunning(b, 1, 'r1', 0);
    const out = applyEvents(b, ev(1, 'r1', 0, [], { error: { code: 'adapter_base_mismatch', message: 'no', retryable: false } }), 1);
    expect(out.ended).toBe(true);
    expect(b.status).toBe('failed');
  });

  it('never exceeds max_tokens and never reorders, whatever the posts (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ from: fc.nat(12), len: fc.nat(6), attempt: fc.integer({ min: 1, max: 3 }), retry: fc.boolean() }), {
          maxLength: 40,
        }),
        (posts) => {
          // The "true" stream every attempt would produce: token i is 100 + i.
          const job = newJob('job-prop0001', 'generate', 8, 3, 0);
          markRunning(job, 1, 'r1', 0);
          for (const p of posts) {
            const a = currentAttempt(job);
            if (p.retry && a.state === 'running') {
              if (retryJob(job, { code: 'lost', message: '' }, 1) === 'retry') markRunning(job, currentAttempt(job).n, 'r1', 1);
              continue;
            }
            const ids = Array.from({ length: p.len }, (_, i) => 100 + p.from + i);
            applyEvents(job, ev(p.attempt, 'r1', p.from, ids), 1);
          }
          expect(job.ids.length).toBeLessThanOrEqual(8);
          expect(job.ids).toEqual(job.ids.map((_, i) => 100 + i));
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('runner pool', () => {
  const entry = (id: string, slots: number, assigned: number, lastSeen = 0, extra = {}): RunnerEntry => ({
    reg: RunnerRegistrationSchema.parse({
      id,
      url: `http://127.0.0.1:1/${id}`,
      slots,
      max_model_bytes: 1e9,
      backend: 'cpu-native',
      version: '0',
      kinds: ['generate'],
      load: { active: 0, queued: 0, kv_free_bytes: 1, kv_total_bytes: 1, adapter_free_bytes: 1, draining: false },
      ...extra,
    }),
    load: { active: 0, queued: 0, kv_free_bytes: 1, kv_total_bytes: 1, adapter_free_bytes: 1, draining: false },
    last_seen: lastSeen,
    registered_at: 0,
    assigned: Array.from({ length: assigned }, (_, i) => `j${i}`),
  });
  const s = { leaseMs: 1000, queuePerSlot: 1, queueFloor: 0 };

  it('limits outstanding jobs to the live slots and their queue; 429 beyond, 503 with no runner', () => {
    const c = capacity([entry('a', 4, 0, 0), entry('b', 4, 0, -5000)], 7, s, 100);
    expect(c).toMatchObject({ runners: 1, slots: 4, limit: 8 });
    expect(admit(c)).toEqual({ ok: true });
    const full: Capacity = { ...c, outstanding: 8 };
    expect(admit(full)).toMatchObject({ ok: false, status: 429, code: 'gpu_busy' });
    expect(admit(capacity([], 0, s, 0))).toMatchObject({ ok: false, status: 503, code: 'gpu_unavailable' });
    expect(admit(capacity([], 0, { ...s, queueFloor: 2 }, 0))).toEqual({ ok: true });
  });

  it('prefers the least loaded runner that can hold the model, avoiding ones that failed the job', () => {
    const rs = [entry('a', 2, 1), entry('b', 2, 0), entry('c', 2, 0, 0, { max_model_bytes: 10 })];
    expect(candidates(rs, { kind: 'generate', modelBytes: 100, avoid: [] }, s, 0).map((r) => r.reg.id)).toEqual(['b', 'a']);
    expect(candidates(rs, { kind: 'generate', modelBytes: 100, avoid: ['b'] }, s, 0).map((r) => r.reg.id)).toEqual(['a', 'b']);
    expect(candidates(rs, { kind: 'merge', modelBytes: 1, avoid: [] }, s, 0)).toEqual([]);
  });
});

describe('protocol parsing of untrusted messages (fuzz)', () => {
  it('queue messages, runner jobs and events either parse or fail as zod errors', () => {
    for (const schema of [QueueMessageSchema, RunnerJobSchema, JobEventsSchema, RunnerRegistrationSchema]) {
      fc.assert(
        fc.property(fc.jsonValue(), (v) => {
          const r = schema.safeParse(v);
          expect(typeof r.success).toBe('boolean');
        }),
        { numRuns: 300 },
      );
    }
    expect(QueueMessageSchema.safeParse({ v: 1, job: 'job-00000001', attempt: 1 }).success).toBe(true);
    expect(QueueMessageSchema.safeParse({ v: 1, job: '../etc', attempt: 1 }).success).toBe(false);
  });
});
