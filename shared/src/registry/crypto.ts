/** Secrets compared without timing leaks, HMAC and random tokens, on Web Crypto only. */
import { bufferSource, sha256, toHex } from '../storage/digest.ts';

/**
 * Whether two byte strings are equal, in time that depends only on their lengths. Callers
 * compare fixed-length values (hashes, MACs), so the length itself reveals nothing secret.
 */
export function timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  let diff = 0;
  for (let i = 0; i < a.byteLength; i++) diff |= (a[i] as number) ^ (b[i] as number);
  return diff === 0;
}

/** Text secrets of any length: hashed first, so the comparison is over 32 bytes whatever the input. */
export async function timingSafeEqualText(a: string, b: string): Promise<boolean> {
  const [ha, hb] = await Promise.all([sha256(a), sha256(b)]);
  return timingSafeEqual(ha, hb) && a.length === b.length;
}

export async function hmacSha256(key: string | Uint8Array, message: string | Uint8Array): Promise<Uint8Array> {
  const k = await crypto.subtle.importKey('raw', bufferSource(key), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return new Uint8Array(await crypto.subtle.sign('HMAC', k, bufferSource(message)));
}

export async function hmacSha256Hex(key: string | Uint8Array, message: string | Uint8Array): Promise<string> {
  return toHex(await hmacSha256(key, message));
}

/** `bytes` random bytes as unpadded base64url. */
export function randomToken(bytes = 32): string {
  const raw = crypto.getRandomValues(new Uint8Array(bytes));
  let bin = '';
  for (const b of raw) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}
