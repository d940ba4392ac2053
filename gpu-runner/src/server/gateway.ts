/** The runner's calls to the gateway Worker: JSON POSTs with the runner token, replies parsed by the contract. */
import { gpu } from '@lora-edge/shared';
import type { z } from 'zod';

export type Outcome<T> =
  | { ok: true; value: T }
  /** The gateway answered 404/409/410: this job or attempt is not (or no longer) the caller's. */
  | { ok: false; gone: true; status: number }
  /** Unreachable, timed out, 5xx, 401, 429 or a reply off the contract: try again later. */
  | { ok: false; gone: false; status: number; why: string };

export class GatewayClient {
  constructor(
    readonly baseUrl: string,
    private readonly token: string,
    private readonly fetchImpl: typeof fetch = fetch,
  ) {}

  async post<S extends z.ZodType>(path: string, body: unknown, schema: S, timeoutMs: number): Promise<Outcome<z.infer<S>>> {
    let res: Response;
    try {
      res = await this.fetchImpl(`${this.baseUrl}${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${this.token}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (e) {
      return { ok: false, gone: false, status: 0, why: (e as Error).message };
    }
    const text = await res.text().catch(() => '');
    if (res.status === 404 || res.status === 409 || res.status === 410) return { ok: false, gone: true, status: res.status };
    if (!res.ok) return { ok: false, gone: false, status: res.status, why: `HTTP ${res.status} ${text.slice(0, 200)}` };
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      return { ok: false, gone: false, status: res.status, why: 'the reply is not JSON' };
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success)
      return { ok: false, gone: false, status: res.status, why: `unexpected reply: ${parsed.error.message.slice(0, 200)}` };
    return { ok: true, value: parsed.data };
  }

  register(reg: gpu.RunnerRegistration, timeoutMs = 10_000) {
    return this.post('/runners/register', reg, gpu.RegisterReplySchema, timeoutMs);
  }

  heartbeat(id: string, load: gpu.RunnerLoad, timeoutMs = 10_000) {
    return this.post(`/runners/${encodeURIComponent(id)}/heartbeat`, load, gpu.HeartbeatReplySchema, timeoutMs);
  }

  events(job: string, ev: gpu.JobEvents, timeoutMs: number) {
    return this.post(`/runners/jobs/${encodeURIComponent(job)}/events`, ev, gpu.EventsReplySchema, timeoutMs);
  }
}
