import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Control } from './control.ts';
import { GatewayClient } from './gateway.ts';
import { silentLogger } from './log.ts';
import { TestGateway, TOKEN } from './testing.ts';

let gw: TestGateway;
beforeAll(async () => {
  gw = await new TestGateway().start();
});
afterAll(() => gw.close());

const load = { active: 0, queued: 0, kv_free_bytes: 1, kv_total_bytes: 1, adapter_free_bytes: 1, draining: false };

function control(id: string, url = gw.url) {
  return new Control({
    gateway: new GatewayClient(url, TOKEN),
    log: silentLogger,
    load: () => load,
    backoffMs: { first: 20, max: 100 },
    registration: () => ({
      id,
      url: 'http://127.0.0.1:1',
      slots: 2,
      max_model_bytes: 100,
      backend: 'js',
      version: '0',
      kinds: ['generate'],
      load,
    }),
  });
}

describe('registration and heartbeats', () => {
  it('retries registration with backoff until the gateway takes it, then beats at its pace', async () => {
    gw.refuseRegistrations = true;
    const c = control('late');
    const registered = c.start();
    await new Promise((r) => setTimeout(r, 200));
    expect(c.registered).toBe(false);
    gw.refuseRegistrations = false;
    await registered;
    expect(c.timing()).toEqual({ heartbeatMs: gw.heartbeatMs, leaseMs: gw.leaseMs });
    await gw.until(() => c.heartbeats >= 2, 5_000, 'heartbeats');
    await c.stop();
  });

  it('registers again when a heartbeat comes back known:false', async () => {
    const c = control('forgotten');
    await c.start();
    gw.runners.delete('forgotten');
    await gw.until(() => c.registrations === 2, 5_000, 'a second registration');
    expect(gw.registrations.filter((r) => r.id === 'forgotten')).toHaveLength(2);
    await c.stop();
  });

  it('beats at once when asked (draining)', async () => {
    const c = control('prompt');
    await c.start();
    gw.heartbeatMs = 60_000;
    try {
      const c2 = control('prompt2');
      await c2.start();
      const before = gw.heartbeats.length;
      c2.beat();
      await gw.until(() => gw.heartbeats.length > before, 2_000, 'an immediate heartbeat');
      await c2.stop();
    } finally {
      gw.heartbeatMs = 100;
      await c.stop();
    }
  });
});
