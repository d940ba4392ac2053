/**
 * Where a generation runs. A `Dispatcher` takes a planned job and returns the engine's
 * completion, or its token stream (infer's SSE: `data: {"index","ids"}` per token, then
 * `data: {"done": true, …completion}`). Edge-eligible models go to services/infer through the
 * INFER binding; the rest, and models infer turns away as over its memory budget, go to the GPU
 * path (gpu.ts: the gateway Worker's queue and runners).
 */
import { type GpuBinding, GpuDispatcher } from './gpu.ts';
import { ApiError } from './http/errors.ts';

/** The request services/infer takes (services/infer/src/request.ts). */
export interface InferRequest {
  model: { digest: string };
  adapters: { tenant: string; name: string; digest: string; weight: number }[];
  mode: 'merged' | 'unmerged';
  prompt_ids: number[];
  max_tokens: number;
  temperature: number;
  top_k: number;
  top_p: number;
  seed: number;
  ignore_eos: boolean;
  stop_token_ids: number[];
}

/** What services/infer returns (services/infer/src/generate.ts). */
export interface Completion {
  ids: number[];
  finish_reason: 'length' | 'stop';
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
  served: { model: string; mode: string; adapters: string[]; context: number };
  timing: { load_ms: number; prefill_ms: number; decode_ms_per_token: number };
}

type Refusal = { ok: false; status: number; error: Record<string, string | number | boolean> };
export type GenerateResult = { ok: true; completion: Completion } | Refusal;
export type StreamResult = { ok: true; body: ReadableStream<Uint8Array> } | Refusal;

/** The InferRpc entrypoint as the router sees it through the service binding. */
export interface InferBinding {
  generate(req: InferRequest): Promise<GenerateResult>;
  stream(req: InferRequest): Promise<StreamResult>;
}

export interface Job {
  target: 'edge' | 'gpu';
  request: InferRequest;
}

export interface Dispatcher {
  generate(job: Job): Promise<Completion>;
  /** Refusals found before the first token are thrown, so they become HTTP errors, not half a stream. */
  stream(job: Job): Promise<ReadableStream<Uint8Array>>;
}

/** A refusal of the engine as the router's error; `route: "gpu"` marks a model over the edge budget. */
export class EngineRefusal extends ApiError {
  constructor(
    status: number,
    readonly error: Record<string, string | number | boolean>,
  ) {
    const code = typeof error.code === 'string' ? error.code : 'engine_error';
    const message = typeof error.message === 'string' ? error.message : 'the inference engine refused the request';
    const param = typeof error.field === 'string' ? error.field : null;
    // Statuses infer uses for the caller's faults pass through; anything else is ours.
    const mapped = status === 400 || status === 404 || status === 413 || status === 422 ? status : 502;
    super(mapped, code, message, param);
  }

  get toGpu(): boolean {
    return this.error.route === 'gpu';
  }
}

export class EdgeDispatcher implements Dispatcher {
  constructor(private readonly infer: InferBinding) {}

  async generate(job: Job): Promise<Completion> {
    const r = await this.infer.generate(job.request);
    if (!r.ok) throw new EngineRefusal(r.status, r.error);
    return r.completion;
  }

  async stream(job: Job): Promise<ReadableStream<Uint8Array>> {
    const r = await this.infer.stream(job.request);
    if (!r.ok) throw new EngineRefusal(r.status, r.error);
    return r.body;
  }
}

/** A deployment without the GPU gateway (no GPU binding): models beyond the edge are refused. */
export class UnavailableGpuDispatcher implements Dispatcher {
  private refuse(): never {
    throw new ApiError(
      503,
      'gpu_path_unavailable',
      'This model is too large for the edge and this deployment has no GPU path; try a smaller base model.',
      'model',
    );
  }
  async generate(): Promise<Completion> {
    return this.refuse();
  }
  async stream(): Promise<ReadableStream<Uint8Array>> {
    return this.refuse();
  }
}

/** Edge first for edge-eligible models; the GPU path for the rest and for what the edge turns away. */
export class RoutingDispatcher implements Dispatcher {
  constructor(
    private readonly edge: Dispatcher,
    readonly gpu: Dispatcher,
  ) {}

  /** GPU jobs started for this request so far. */
  get gpuJobs(): readonly string[] {
    return this.gpu instanceof GpuDispatcher ? this.gpu.jobs : [];
  }

  async generate(job: Job): Promise<Completion> {
    if (job.target === 'gpu') return this.gpu.generate(job);
    try {
      return await this.edge.generate(job);
    } catch (e) {
      if (e instanceof EngineRefusal && e.toGpu) return this.gpu.generate({ ...job, target: 'gpu' });
      throw e;
    }
  }

  async stream(job: Job): Promise<ReadableStream<Uint8Array>> {
    if (job.target === 'gpu') return this.gpu.stream(job);
    try {
      return await this.edge.stream(job);
    } catch (e) {
      if (e instanceof EngineRefusal && e.toGpu) return this.gpu.stream({ ...job, target: 'gpu' });
      throw e;
    }
  }
}

/** Who is asking and for what size of model: the GPU path needs both (tenancy of jobs, runner fit). */
export interface Caller {
  tenant: string;
  modelBytes: number;
}

export function gpuDispatcherFor(env: Env, caller: Caller): Dispatcher {
  const binding = (env as unknown as { GPU?: unknown }).GPU;
  return binding ? new GpuDispatcher(binding as GpuBinding, caller.tenant, caller.modelBytes) : new UnavailableGpuDispatcher();
}

export function dispatcherFor(env: Env, caller: Caller): RoutingDispatcher {
  return new RoutingDispatcher(new EdgeDispatcher(env.INFER as unknown as InferBinding), gpuDispatcherFor(env, caller));
}
