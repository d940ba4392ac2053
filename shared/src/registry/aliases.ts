/** Alias routes with weighted canary splits. */
import { sha256 } from '../storage/digest.ts';
import type { Alias, AliasRoute } from './schemas.ts';

/**
 * The route that owns `u` ∈ [0, 1) when the routes split [0, 1) in proportion to their weights,
 * in listed order: weights [95, 5] send u < 0.95 to the first route and the rest to the canary.
 */
export function pickAliasRoute(alias: Pick<Alias, 'routes'>, u: number): AliasRoute {
  const total = alias.routes.reduce((s, r) => s + r.weight, 0);
  const x = Math.min(Math.max(u, 0), 1) * total;
  let acc = 0;
  for (const r of alias.routes) {
    acc += r.weight;
    if (x < acc) return r;
  }
  return alias.routes[alias.routes.length - 1] as AliasRoute;
}

/** A uniform number in [0, 1) fixed by `key` (e.g. a user or session id), so a caller stays on one side of a split. */
export async function stickyUniform(key: string): Promise<number> {
  const h = await sha256(key);
  let x = 0;
  for (let i = 0; i < 6; i++) x = x * 256 + (h[i] as number);
  return x / 2 ** 48;
}
