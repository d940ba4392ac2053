/**
 * Generic-webhook signatures seen within their validity window. A Durable Object, not KV: two
 * copies of one delivery arriving at once must not both pass, and KV has no compare-and-set.
 * Sharded by the signature's first hex digit (16 objects).
 */
import { DurableObject } from 'cloudflare:workers';

export class ReplayGuard extends DurableObject<Env> {
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.storage.sql.exec('CREATE TABLE IF NOT EXISTS seen (sig TEXT PRIMARY KEY, expires INTEGER NOT NULL)');
    ctx.storage.sql.exec('CREATE INDEX IF NOT EXISTS seen_expires ON seen (expires)');
  }

  /** true the first time `sig` is presented before `expiresAt` (ms); false for a replay. */
  remember(sig: string, expiresAt: number): boolean {
    const sql = this.ctx.storage.sql;
    sql.exec('DELETE FROM seen WHERE expires <= ?', Date.now());
    if (sql.exec('SELECT 1 FROM seen WHERE sig = ?', sig).toArray().length > 0) return false;
    sql.exec('INSERT INTO seen (sig, expires) VALUES (?, ?)', sig, expiresAt);
    return true;
  }
}

export async function firstDelivery(env: Env, signature: string, expiresAt: number): Promise<boolean> {
  const stub = env.NONCES.get(env.NONCES.idFromName(`shard-${signature.slice(0, 1)}`));
  return stub.remember(signature, expiresAt);
}
