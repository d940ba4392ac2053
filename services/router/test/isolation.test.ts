/**
 * Tenant isolation: another tenant's private adapter cannot be used, listed or told apart from a
 * name that does not exist, by any way of naming it. Shared adapters are usable by everyone.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { call, get, greedy, json, newTenant, post, putAdapter, putStories, reg, STORIES } from './helpers.ts';

let owner: { id: string; key: string };
let other: { id: string; key: string };

beforeAll(async () => {
  await putStories();
  owner = await newTenant('owner');
  other = await newTenant('other');
  await putAdapter(owner.id, 'secret', 'tiny-qv-r4', { examples: ['once upon a time there was a secret dragon'] });
  await putAdapter(owner.id, 'public', 'tiny-all-r8', { visibility: 'shared', examples: ['write a sql query'] });
});

/** The error of a request that names `ref`, with `ref` itself blanked out. */
async function refusal(res: Response, ref: string): Promise<{ status: number; body: string }> {
  return { status: res.status, body: (await res.text()).replaceAll(ref, '<ref>') };
}

describe('tenant isolation', () => {
  it('answers another tenant’s private adapter exactly as an unknown one, however it is named', async () => {
    const secret = `${owner.id}/secret`;
    const missing = `${owner.id}/no-such-adapter`;
    const ways = [
      (ref: string) => post('/v1/completions', greedy(`${STORIES}:${ref}`, [1], 2), other.key),
      (ref: string) => post('/v1/completions', greedy(ref, [1], 2), other.key),
      (ref: string) => post('/v1/completions', greedy(STORIES, [1], 2, { adapters: [{ id: ref, weight: 1 }] }), other.key),
      (ref: string) => get(`/v1/models/${STORIES}:${ref}`, other.key),
      (ref: string) =>
        call('/v1/aliases/sneaky', {
          method: 'PUT',
          headers: { authorization: `Bearer ${other.key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ routes: [{ weight: 1, mix: [{ adapter: ref, weight: 1 }] }] }),
        }),
      (ref: string) =>
        call('/v1/tenant', {
          method: 'PATCH',
          headers: { authorization: `Bearer ${other.key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ default_adapter: ref }),
        }),
    ];
    for (const [i, way] of ways.entries()) {
      const a = await refusal(await way(secret), secret);
      const b = await refusal(await way(missing), missing);
      expect(a.status, `way ${i}`).toBe(404);
      expect(a, `way ${i}`).toEqual(b);
    }
    // The owner reaches it by both names.
    const own = await json(await post('/v1/completions', greedy(`${STORIES}:secret`, [1], 2), owner.key));
    expect(own.lora_edge).toMatchObject({ adapters: [{ id: `${owner.id}/secret`, weight: 1 }] });
    await json(await post('/v1/completions', greedy(`${STORIES}:${owner.id}/secret`, [1], 2), owner.key));
  });

  it('never lists another tenant’s private adapter or aliases', async () => {
    await reg().putAlias({ tenant: owner.id, name: 'owner-alias', routes: [{ weight: 1, mix: [{ adapter: 'secret', weight: 1 }] }] });
    const list = await json<{ data: { id: string; parent: string | null; owned_by: string }[] }>(await get('/v1/models', other.key));
    const ids = list.data.map((m) => m.id);
    expect(ids).toContain(STORIES);
    expect(ids).toContain(`${STORIES}:${owner.id}/public`);
    expect(ids.some((id) => id.includes('secret') || id === 'owner-alias')).toBe(false);
    expect(JSON.stringify(list)).not.toContain('secret');
    const mine = await json<{ data: { id: string; parent: string | null; root: string }[] }>(await get('/v1/models', owner.key));
    expect(mine.data.find((m) => m.id === `${STORIES}:secret`)).toMatchObject({ parent: STORIES, root: `${owner.id}/secret` });
    expect(mine.data.find((m) => m.id === 'owner-alias')).toMatchObject({ parent: STORIES });
  });

  it('lets every tenant use a shared adapter by its full name', async () => {
    const r = await json(await post('/v1/completions', greedy(`${STORIES}:${owner.id}/public`, [1], 2), other.key));
    expect(r.lora_edge).toMatchObject({ adapters: [{ id: `${owner.id}/public`, weight: 1 }] });
    // A bare name means the caller's own adapter, never another tenant's.
    expect((await post('/v1/completions', greedy(`${STORIES}:public`, [1], 2), other.key)).status).toBe(404);
  });

  it('does not see another tenant’s aliases as models', async () => {
    const res = await post('/v1/completions', greedy('owner-alias', [1], 2), other.key);
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ error: { code: 'model_not_found', param: 'model' } });
  });
});
