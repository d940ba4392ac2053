/**
 * Server-sent events, both ways: `sseData` frames one event; `SseParser` splits a byte stream
 * into events however its chunks are cut (a chunk may end mid-line or mid-character).
 */

export interface SseEvent {
  /** `event:` (absent means "message"). */
  event?: string;
  data: string;
}

const enc = new TextEncoder();

export function sseData(data: unknown, event?: string): Uint8Array {
  const body = typeof data === 'string' ? data : JSON.stringify(data);
  return enc.encode(`${event ? `event: ${event}\n` : ''}data: ${body}\n\n`);
}

export class SseParser {
  private readonly decoder = new TextDecoder();
  private buffer = '';
  private event: string | undefined;
  private data: string[] = [];

  /** The events completed by this chunk. */
  push(chunk: Uint8Array | string): SseEvent[] {
    this.buffer += typeof chunk === 'string' ? chunk : this.decoder.decode(chunk, { stream: true });
    const out: SseEvent[] = [];
    for (;;) {
      const nl = this.buffer.search(/\r\n|\n|\r/);
      // A lone CR at the end may be the first half of a CRLF cut by the chunking: wait for the next byte.
      if (nl < 0 || (nl === this.buffer.length - 1 && this.buffer[nl] === '\r')) break;
      const line = this.buffer.slice(0, nl);
      this.buffer = this.buffer.slice(nl + (this.buffer.startsWith('\r\n', nl) ? 2 : 1));
      if (line === '') {
        if (this.data.length > 0)
          out.push(this.event === undefined ? { data: this.data.join('\n') } : { event: this.event, data: this.data.join('\n') });
        this.event = undefined;
        this.data = [];
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'data') this.data.push(value);
      else if (field === 'event') this.event = value;
    }
    return out;
  }
}

/** Every event of a complete SSE text (tests, small bodies). */
export function parseSse(text: string): SseEvent[] {
  return new SseParser().push(`${text}\n\n`);
}
