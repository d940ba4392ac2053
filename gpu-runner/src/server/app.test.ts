import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBackend } from '../backend/index.ts';
import { bearer, tokenMatches } from './app.ts';
import { silentLogger } from './log.ts';
import { type Runner, startRunner } from './runner.ts';
import { removeTempDirs, TestGateway, TOKEN, testConfig } from './testing.ts';

let gw: TestGateway;
let runner: Runner;
beforeAll(async () => {
  gw = await new TestGateway().start();
  runner = await startRunner(testConfig(gw.url, { id: 'r-fuzz' }), { backend: loadBackend('js'), log: silentLogger });
});
afterAll(async () => {
  await runner.close();
  await gw.close();
  removeTempDirs();
});

const post = (body: string, token = TOKEN) =>
  runner.app.request('/v1/jobs', { method: 'POST', headers: { authorization: `Bearer ${token}` }, body });

describe('the job endpoint', () => {
  it('compares tokens exactly', () => {
    expect(tokenMatches(TOKEN, TOKEN)).toBe(true);
    expect(tokenMatches(`${TOKEN}x`, TOKEN)).toBe(false);
    expect(tokenMatches('', TOKEN)).toBe(false);
    expect(tokenMatches(undefined, TOKEN)).toBe(false);
    expect(bearer(`Bearer ${TOKEN}`)).toBe(TOKEN);
    expect(bearer(`Basic ${TOKEN}`)).toBeUndefined();
  });

  it('answers random JSON with 400 job_invalid and keeps serving', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.jsonValue().map((v) => JSON.stringify(v)),
          fc.string(),
        ),
        async (body) => {
          const res = await post(body);
          expect(res.status).toBe(400);
          expect(await res.json()).toMatchObject({ error: { code: 'job_invalid', retryable: false } });
        },
      ),
      { numRuns: 200 },
    );
    // Near misses: a job object with random values in its fields.
    const job = fc.record(
      {
        kind: fc.constantFrom('generate', 'merge', 'other'),
        id: fc.oneof(fc.string(), fc.integer()),
        attempt: fc.oneof(fc.integer(), fc.string()),
        spec: fc.jsonValue(),
        resume_ids: fc.oneof(fc.array(fc.integer()), fc.jsonValue()),
      },
      { requiredKeys: [] },
    );
    await fc.assert(
      fc.asyncProperty(job, async (j) => {
        expect((await post(JSON.stringify(j))).status).toBe(400);
      }),
      { numRuns: 200 },
    );
    expect(runner.jobs.jobs).toEqual([]);
    expect((await runner.app.request('/healthz')).status).toBe(200);
  });

  it('answers unknown routes with a JSON 404', async () => {
    const res = await runner.app.request('/v1/nothing', { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ error: { code: 'not_found' } });
  });
});
