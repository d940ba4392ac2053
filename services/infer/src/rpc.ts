/**
 * The interface the router calls through a service binding:
 *
 *   services: [{ binding: "INFER", service: "lora-edge-infer", entrypoint: "InferRpc" }]
 *   const r = await env.INFER.generate(req)   // { ok: true, completion } | { ok: false, status, error }
 *   const s = await env.INFER.stream(req)     // { ok: true, body: ReadableStream (SSE) } | { ok: false, … }
 *   const t = await env.INFER.stats()
 *
 * Refusals come back as values, not exceptions, so their machine-readable code survives the
 * RPC boundary (`edge_budget_exceeded` with `route: "gpu"` sends the job to the GPU queue).
 */
import { WorkerEntrypoint } from 'cloudflare:workers';
import { toApiError } from './errors.ts';
import { type Completion, complete, generate, limits, type Stats, stats } from './generate.ts';
import { type GenerateRequest, parseRequest } from './request.ts';
import { startStream } from './stream.ts';

export type Refusal = { ok: false; status: number; error: Record<string, string | number | boolean> };
export type GenerateResult = { ok: true; completion: Completion } | Refusal;
export type StreamResult = { ok: true; body: ReadableStream<Uint8Array> } | Refusal;

function refusal(e: unknown): Refusal {
  const err = toApiError(e);
  if (err.status >= 500) console.error('infer:', e);
  return { ok: false, status: err.status, error: err.toJSON() };
}

export class InferRpc extends WorkerEntrypoint<Env> {
  async generate(req: GenerateRequest): Promise<GenerateResult> {
    try {
      return { ok: true, completion: await complete(this.env, parseRequest(req, limits(this.env).maxNewTokens)) };
    } catch (e) {
      return refusal(e);
    }
  }

  async stream(req: GenerateRequest): Promise<StreamResult> {
    try {
      return { ok: true, body: await startStream(generate(this.env, parseRequest(req, limits(this.env).maxNewTokens))) };
    } catch (e) {
      return refusal(e);
    }
  }

  async stats(): Promise<Stats> {
    return stats(this.env);
  }
}
