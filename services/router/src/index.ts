import { OpenAPIHono } from '@hono/zod-openapi';
import { type AppEnv, requireTenant } from './http/auth.ts';
import { ApiError, toApiError } from './http/errors.ts';
import { documentRoutes, OPENAPI_INFO } from './openapi.ts';
import { adminRoutes } from './routes/admin.ts';
import { aliasRoutes } from './routes/aliases.ts';
import { chatRoutes } from './routes/chat.ts';
import { completionRoutes } from './routes/completions.ts';
import { generationRoutes, runnerProxy } from './routes/generations.ts';
import { mergeProxy } from './routes/merge-proxy.ts';
import { modelRoutes } from './routes/models.ts';
import { SERVICE, VERSION } from './version.ts';

/**
 * The router Worker: the public OpenAI-compatible API (auth, validation, adapter selection,
 * execution plan, dispatch to infer or the GPU path, streaming back), and the one host in front
 * of the merge service's paths.
 */

const app = new OpenAPIHono<AppEnv>();

app.get('/health', (c) => c.json({ status: 'ok', service: SERVICE, version: VERSION }));
documentRoutes(app);
app.doc31('/openapi.json', OPENAPI_INFO);

app.route('/admin', adminRoutes);
app.use('/v1/completions', requireTenant);
app.use('/v1/chat/*', requireTenant);
app.use('/v1/models', requireTenant);
app.use('/v1/models/*', requireTenant);
app.use('/v1/aliases', requireTenant);
app.use('/v1/aliases/*', requireTenant);
app.use('/v1/tenant', requireTenant);
app.use('/v1/generations/*', requireTenant);
app.route('/v1', completionRoutes);
app.route('/v1', chatRoutes);
app.route('/v1', modelRoutes);
app.route('/v1', aliasRoutes);
app.route('/v1', generationRoutes);
app.route('/', runnerProxy);
app.route('/', mergeProxy);

app.notFound((c) =>
  c.json(
    { error: { message: `No route for ${c.req.method} ${c.req.path}.`, type: 'invalid_request_error', code: 'not_found', param: null } },
    404,
  ),
);
app.onError((e, c) => {
  const err = toApiError(e);
  // Our own refusals (gpu_path_unavailable, engine errors passed on) are expected; anything else is a bug.
  if (err.status >= 500 && !(e instanceof ApiError)) console.error(`${c.req.method} ${c.req.path}:`, e);
  return c.json(err.toJSON(), err.status, err.headers);
});

export default app;
