/** Content digests (SHA-256 through Web Crypto, available in Workers, Node ≥ 19 and browsers). */

const encoder = new TextEncoder();

/** A view Web Crypto accepts (its BufferSource excludes views on a SharedArrayBuffer). */
export function bufferSource(data: Uint8Array | string): Uint8Array<ArrayBuffer> {
  // encode() always returns a fresh ArrayBuffer; some lib typings say ArrayBufferLike.
  if (typeof data === 'string') return encoder.encode(data) as Uint8Array<ArrayBuffer>;
  return data.buffer instanceof ArrayBuffer ? (data as Uint8Array<ArrayBuffer>) : new Uint8Array(data);
}

export function toHex(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}

/** Lowercase hex to bytes; undefined unless the text is an even number of hex digits. */
export function fromHex(hex: string): Uint8Array | undefined {
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) return undefined;
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export async function sha256(data: Uint8Array | string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', bufferSource(data)));
}

export async function sha256Hex(data: Uint8Array | string): Promise<string> {
  return toHex(await sha256(data));
}

export const DIGEST_RE = /^[0-9a-f]{64}$/;

export function isDigest(s: unknown): s is string {
  return typeof s === 'string' && DIGEST_RE.test(s);
}

/**
 * The digest of a set of named files (an adapter dir, a model dir): SHA-256 over
 * `lora-edge-files-v1` and one `<name> <sha256 of the file>` line per file, names sorted. Both
 * files of a PEFT adapter shape its result (r and alpha live in the config), so both count.
 */
export async function filesDigest(
  files: Record<string, Uint8Array | string>,
): Promise<{ digest: string; files: Record<string, FileDigest> }> {
  const names = Object.keys(files).sort();
  const out: Record<string, FileDigest> = {};
  const lines = ['lora-edge-files-v1'];
  for (const name of names) {
    const data = bufferSource(files[name] as Uint8Array | string);
    const d = { size: data.byteLength, sha256: await sha256Hex(data) };
    out[name] = d;
    lines.push(`${name} ${d.sha256}`);
  }
  return { digest: await sha256Hex(`${lines.join('\n')}\n`), files: out };
}

export interface FileDigest {
  size: number;
  sha256: string;
}
