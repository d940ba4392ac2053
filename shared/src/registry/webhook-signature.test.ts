import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hmacSha256Hex, timingSafeEqual, timingSafeEqualText } from './crypto.ts';
import { parseWebhookSignatures, signWebhook, verifyWebhook } from './webhook-signature.ts';

const body = new TextEncoder().encode('{"type":"merge"}');

describe('generic webhook signatures', () => {
  it('signs HMAC-SHA256 over "<timestamp>.<body>"', async () => {
    const sig = await signWebhook('s3cret', 1700000000, body);
    expect(sig).toBe(`sha256=${await hmacSha256Hex('s3cret', '1700000000.{"type":"merge"}')}`);
  });

  it('accepts a good signature within the window, and a rotated pair', async () => {
    const sig = await signWebhook('s3cret', 1000, body);
    const ok = await verifyWebhook({ secret: 's3cret', timestamp: '1000', signature: sig, body, now: 1000 + 299 });
    expect(ok).toEqual({ ok: true, timestamp: 1000, signature: sig.slice(7) });
    const rotated = await verifyWebhook({
      secret: 's3cret',
      timestamp: '1000',
      signature: `sha256=${'0'.repeat(64)}, ${sig}`,
      body,
      now: 1000,
    });
    expect(rotated.ok).toBe(true);
  });

  it('refuses each fault with its own code', async () => {
    const sig = await signWebhook('s3cret', 1000, body);
    const v = (o: Partial<Parameters<typeof verifyWebhook>[0]>) =>
      verifyWebhook({ secret: 's3cret', timestamp: '1000', signature: sig, body, now: 1000, ...o }).then((r) => (r.ok ? 'ok' : r.code));
    expect(await v({ signature: null })).toBe('signature_missing');
    expect(await v({ signature: 'sha1=abc' })).toBe('signature_malformed');
    expect(await v({ timestamp: undefined })).toBe('timestamp_missing');
    expect(await v({ timestamp: '1e3' })).toBe('timestamp_invalid');
    expect(await v({ now: 1000 + 301 })).toBe('timestamp_stale');
    expect(await v({ now: 1000 - 301 })).toBe('timestamp_stale');
    expect(await v({ secret: 'other' })).toBe('signature_invalid');
    expect(await v({ timestamp: '1001', now: 1001 })).toBe('signature_invalid');
    expect(await v({ body: new TextEncoder().encode('{"type":"merge" }') })).toBe('signature_invalid');
  });

  it('never throws on arbitrary headers and bodies', async () => {
    await fc.assert(
      fc.asyncProperty(fc.option(fc.string()), fc.option(fc.string()), fc.uint8Array({ maxLength: 64 }), async (ts, sig, b) => {
        const r = await verifyWebhook({ secret: 'k', timestamp: ts, signature: sig, body: b, now: 1000 });
        expect(r.ok).toBe(false);
      }),
      { numRuns: 200 },
    );
    expect(parseWebhookSignatures(`sha256=${'A'.repeat(64)}`)).toEqual(['a'.repeat(64)]);
  });
});

describe('constant-time comparisons', () => {
  it('compares bytes and text', async () => {
    expect(timingSafeEqual(Uint8Array.of(1, 2), Uint8Array.of(1, 2))).toBe(true);
    expect(timingSafeEqual(Uint8Array.of(1, 2), Uint8Array.of(1, 3))).toBe(false);
    expect(timingSafeEqual(Uint8Array.of(1), Uint8Array.of(1, 2))).toBe(false);
    expect(await timingSafeEqualText('abc', 'abc')).toBe(true);
    expect(await timingSafeEqualText('abc', 'abd')).toBe(false);
    expect(await timingSafeEqualText('', 'a')).toBe(false);
  });
});
