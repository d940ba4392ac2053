/**
 * API keys: `lek_<id>_<secret>`. The id (16 hex digits) finds the record; the record holds only
 * SHA-256(key), compared in constant time. A leaked registry therefore leaks no usable key.
 */
import { fromHex, sha256, sha256Hex, toHex } from '../storage/digest.ts';
import { randomToken, timingSafeEqual } from './crypto.ts';
import type { ApiKeyRecord } from './schemas.ts';

const KEY_RE = /^lek_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

export interface ParsedApiKey {
  id: string;
  key: string;
}

/** The key id, or undefined when the text is not shaped like a key (checked before any lookup). */
export function parseApiKey(text: string): ParsedApiKey | undefined {
  const m = KEY_RE.exec(text);
  return m ? { id: m[1] as string, key: text } : undefined;
}

export async function newApiKey(tenant: string, now: Date, label?: string): Promise<{ key: string; record: ApiKeyRecord }> {
  const id = toHex(crypto.getRandomValues(new Uint8Array(8)));
  const key = `lek_${id}_${randomToken(32)}`;
  const record: ApiKeyRecord = { id, tenant, hash: await sha256Hex(key), created_at: now.toISOString() };
  if (label !== undefined) record.label = label;
  return { key, record };
}

/** Whether `key` is the one `record` was made for (and is not revoked). */
export async function apiKeyMatches(key: string, record: ApiKeyRecord): Promise<boolean> {
  const want = fromHex(record.hash);
  const got = await sha256(key);
  return want !== undefined && timingSafeEqual(got, want) && record.revoked !== true;
}
