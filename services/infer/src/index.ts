import { Hono } from 'hono';
import { SERVICE, VERSION } from './version.ts';

/** The infer Worker: forward passes of small models with onnxruntime-web inside the Worker. */

const app = new Hono();

app.get('/health', (c) => c.json({ status: 'ok', service: SERVICE, version: VERSION }));

app.notFound((c) => c.json({ error: { code: 'not_found', message: `no route for ${c.req.method} ${c.req.path}` } }, 404));

export default app;
