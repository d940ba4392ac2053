/**
 * lora-edge's generic webhook signature: `X-LoraEdge-Signature: sha256=<hex>` where hex is
 * HMAC-SHA256(secret, `<timestamp>.<raw body>`) and `X-LoraEdge-Timestamp` is Unix seconds.
 * Binding the timestamp into the MAC lets the receiver refuse stale deliveries; remembering
 * the signatures seen inside the tolerance window refuses replays (the receiver's job).
 * Several `sha256=` values, comma-separated, may be sent while a secret is rotated.
 */
import { bufferSource, fromHex } from '../storage/digest.ts';
import { hmacSha256, hmacSha256Hex, timingSafeEqual } from './crypto.ts';

export const WEBHOOK_TIMESTAMP_HEADER = 'X-LoraEdge-Timestamp';
export const WEBHOOK_SIGNATURE_HEADER = 'X-LoraEdge-Signature';
export const DEFAULT_WEBHOOK_TOLERANCE_S = 300;

export type WebhookRefusal =
  | 'signature_missing'
  | 'signature_malformed'
  | 'timestamp_missing'
  | 'timestamp_invalid'
  | 'timestamp_stale'
  | 'signature_invalid';

export type WebhookVerdict = { ok: true; timestamp: number; signature: string } | { ok: false; code: WebhookRefusal; message: string };

function signedBytes(timestamp: number, body: Uint8Array | string): Uint8Array {
  const head = new TextEncoder().encode(`${timestamp}.`);
  const b = bufferSource(body);
  const out = new Uint8Array(head.byteLength + b.byteLength);
  out.set(head, 0);
  out.set(b, head.byteLength);
  return out;
}

/** The header value a sender puts in X-LoraEdge-Signature. */
export async function signWebhook(secret: string, timestamp: number, body: Uint8Array | string): Promise<string> {
  return `sha256=${await hmacSha256Hex(secret, signedBytes(timestamp, body))}`;
}

/** Unix seconds: 1 to 12 decimal digits, nothing else. */
export function parseWebhookTimestamp(text: string): number | undefined {
  return /^[0-9]{1,12}$/.test(text) ? Number(text) : undefined;
}

/** The hex MACs of a signature header, or undefined if it is not `sha256=<64 hex>[,…]` (at most 4). */
export function parseWebhookSignatures(text: string): string[] | undefined {
  const parts = text.split(',').map((p) => p.trim());
  if (parts.length === 0 || parts.length > 4) return undefined;
  const out: string[] = [];
  for (const p of parts) {
    const m = /^sha256=([0-9a-fA-F]{64})$/.exec(p);
    if (!m) return undefined;
    out.push((m[1] as string).toLowerCase());
  }
  return out;
}

export interface VerifyWebhookInput {
  secret: string;
  timestamp: string | null | undefined;
  signature: string | null | undefined;
  body: Uint8Array;
  /** Unix seconds. */
  now: number;
  toleranceS?: number;
}

export async function verifyWebhook(input: VerifyWebhookInput): Promise<WebhookVerdict> {
  const tolerance = input.toleranceS ?? DEFAULT_WEBHOOK_TOLERANCE_S;
  if (!input.signature) return { ok: false, code: 'signature_missing', message: `the ${WEBHOOK_SIGNATURE_HEADER} header is missing` };
  const sigs = parseWebhookSignatures(input.signature);
  if (!sigs) return { ok: false, code: 'signature_malformed', message: `${WEBHOOK_SIGNATURE_HEADER} must be sha256=<64 hex digits>` };
  if (!input.timestamp) return { ok: false, code: 'timestamp_missing', message: `the ${WEBHOOK_TIMESTAMP_HEADER} header is missing` };
  const ts = parseWebhookTimestamp(input.timestamp);
  if (ts === undefined) return { ok: false, code: 'timestamp_invalid', message: `${WEBHOOK_TIMESTAMP_HEADER} must be Unix seconds` };
  // Checked before the MAC, but a forged timestamp fails the MAC anyway: it is signed.
  if (Math.abs(input.now - ts) > tolerance) {
    return { ok: false, code: 'timestamp_stale', message: `the timestamp is more than ${tolerance} s away from the receiver's clock` };
  }
  const want = await hmacSha256(input.secret, signedBytes(ts, input.body));
  for (const s of sigs) {
    const got = fromHex(s) as Uint8Array;
    if (timingSafeEqual(got, want)) return { ok: true, timestamp: ts, signature: s };
  }
  return { ok: false, code: 'signature_invalid', message: 'the signature does not match the body and timestamp' };
}
