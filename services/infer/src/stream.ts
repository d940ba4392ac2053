/**
 * Server-sent events of one generation: `data: {"index":i,"ids":[id]}` per token, then
 * `data: {"done":true, …completion}`; a failure after the first byte is `event: error` with
 * `{code, message}`. The same bytes go over HTTP and over RPC (a ReadableStream).
 */
import type { ApiError } from './errors.ts';
import { toApiError } from './errors.ts';
import type { Completion, TokenEvent } from './generate.ts';

const enc = new TextEncoder();

export function sseStream(
  events: AsyncGenerator<TokenEvent, Completion>,
  first?: IteratorResult<TokenEvent, Completion>,
): ReadableStream<Uint8Array> {
  let pending = first;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const r = pending ?? (await events.next());
        pending = undefined;
        if (r.done) {
          controller.enqueue(enc.encode(`data: ${JSON.stringify({ done: true, ...r.value })}\n\n`));
          controller.close();
        } else {
          controller.enqueue(enc.encode(`data: ${JSON.stringify({ index: r.value.index, ids: [r.value.id] })}\n\n`));
        }
      } catch (e) {
        const err: ApiError = toApiError(e);
        controller.enqueue(enc.encode(`event: error\ndata: ${JSON.stringify(err.toJSON())}\n\n`));
        controller.close();
      }
    },
    async cancel() {
      await events.return(undefined as unknown as Completion);
    },
  });
}

/**
 * Starts a generation and waits for its first event, so refusals (bad input, model over budget,
 * adapter that does not fit) surface as errors before any byte is streamed.
 */
export async function startStream(events: AsyncGenerator<TokenEvent, Completion>): Promise<ReadableStream<Uint8Array>> {
  const first = await events.next();
  return sseStream(events, first);
}
