import { Hono } from 'hono';
import { toApiError } from './errors.ts';
import { complete, generate, limits, stats } from './generate.ts';
import { parseRequest } from './request.ts';
import { startStream } from './stream.ts';
import { SERVICE, VERSION } from './version.ts';

/**
 * The infer Worker: forward passes of small models with onnxruntime-web inside the Worker.
 *   POST /v1/generate   GenerateRequest (request.ts) → Completion JSON, or SSE with "stream": true
 *   GET  /v1/stats      loaded models, their footprints, the WASM heap
 * The same operations are exposed to the router as RPC (InferRpc, rpc.ts).
 */
export { InferRpc } from './rpc.ts';

const app = new Hono<{ Bindings: Env }>();

app.get('/health', (c) => c.json({ status: 'ok', service: SERVICE, version: VERSION }));

app.post('/v1/generate', async (c) => {
  let body: unknown;
  try {
    body = await c.req.json();
  } catch {
    return c.json({ error: { code: 'invalid_json', message: 'the body is not JSON' } }, 400);
  }
  const req = parseRequest(body, limits(c.env).maxNewTokens);
  if ((body as { stream?: unknown }).stream === true) {
    const stream = await startStream(generate(c.env, req));
    return new Response(stream, { headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-store' } });
  }
  return c.json(await complete(c.env, req));
});

app.get('/v1/stats', async (c) => c.json(await stats(c.env)));

app.notFound((c) => c.json({ error: { code: 'not_found', message: `no route for ${c.req.method} ${c.req.path}` } }, 404));
app.onError((e, c) => {
  const err = toApiError(e);
  if (err.status >= 500) console.error(`${c.req.method} ${c.req.path}:`, e);
  return c.json({ error: err.toJSON() }, err.status);
});

export default app;
