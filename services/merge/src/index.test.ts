import { exports } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';

describe('merge worker (in workerd)', () => {
  it('answers /health', async () => {
    const res = await exports.default.fetch('http://merge.local/health');
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok', service: 'merge', version: '0.1.0' });
  });

  it('answers unknown routes with a machine-readable 404', async () => {
    const res = await exports.default.fetch('http://merge.local/nope');
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ error: { code: 'not_found' } });
  });
});
