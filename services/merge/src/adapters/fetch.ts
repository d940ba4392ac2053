/**
 * Adapters fetched by URL: plain HTTPS GETs of the two PEFT files, as the Hugging Face Hub
 * serves them at `https://huggingface.co/<repo>/resolve/<revision>/<file>` (LFS files answer
 * with a redirect to a CDN). Any other allowed host is read as a directory URL.
 */
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE } from '@lora-edge/shared';
import { readStreamCapped } from '../http/body.ts';
import { ApiError } from '../http/errors.ts';
import type { AdapterSource } from '../lib.ts';

export const HF_HOST = 'huggingface.co';
const REPO_PART = /^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$/;
const MAX_REDIRECTS = 5;

export interface ResolvedSource {
  source: AdapterSource;
  /** Directory URL ending in `/`: the files are `<dir>adapter_config.json`, … */
  dir: string;
  /** A default adapter name: the repo's or the directory's last part. */
  suggestedName: string;
}

const bad = (message: string) => new ApiError(400, 'invalid_url', message, { field: 'url' });

function hfDir(repo: string, revision: string, subfolder: string | undefined): string {
  const sub = subfolder ? `${subfolder.split('/').map(encodeURIComponent).join('/')}/` : '';
  return `https://${HF_HOST}/${repo}/resolve/${encodeURIComponent(revision)}/${sub}`;
}

export function hubSource(repo: string, revision: string, subfolder?: string): ResolvedSource {
  const source: AdapterSource = subfolder ? { kind: 'hf', repo, revision, subfolder } : { kind: 'hf', repo, revision };
  return { source, dir: hfDir(repo, revision, subfolder), suggestedName: repo.split('/').pop() as string };
}

/**
 * `https://huggingface.co/<owner>/<repo>[/(tree|resolve)/<revision>[/<subfolder>]]`, or a
 * directory URL on another allowed host. `revision` overrides the one in the URL.
 */
export function resolveSourceUrl(text: string, allowedHosts: readonly string[], revision?: string): ResolvedSource {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw bad('url is not an absolute URL');
  }
  if (url.protocol !== 'https:') throw bad('url must be https');
  if (url.username || url.password) throw bad('url must not carry credentials');
  if (url.port) throw bad('url must use the default https port');
  const host = url.hostname.toLowerCase();
  if (!allowedHosts.includes('*') && !allowedHosts.includes(host)) {
    throw new ApiError(422, 'source_host_not_allowed', `fetching from ${host} is not allowed (allowed: ${allowedHosts.join(', ')})`, {
      field: 'url',
    });
  }
  if (url.search || url.hash) throw bad('url must not have a query or fragment');
  const parts = url.pathname.split('/').filter(Boolean).map(decodePart);
  if (host === HF_HOST) {
    const [owner, repo, kind, rev, ...sub] = parts;
    if (!owner || !repo || !REPO_PART.test(owner) || !REPO_PART.test(repo)) throw bad('a Hub URL is https://huggingface.co/<owner>/<repo>');
    if (kind !== undefined && kind !== 'tree' && kind !== 'resolve')
      throw bad('a Hub URL continues with /tree/<revision> or /resolve/<revision>');
    if (kind !== undefined && !rev) throw bad('the Hub URL names no revision');
    if (sub.some((s) => s === '..' || s === '.')) throw bad('url must not climb');
    return hubSource(`${owner}/${repo}`, revision ?? rev ?? 'main', sub.length ? sub.join('/') : undefined);
  }
  if (parts.some((s) => s === '..' || s === '.')) throw bad('url must not climb');
  const dir = url.href.endsWith('/') ? url.href : `${url.href}/`;
  return { source: { kind: 'url', url: dir }, dir, suggestedName: parts.at(-1) ?? host };
}

function decodePart(p: string): string {
  try {
    return decodeURIComponent(p);
  } catch {
    throw bad('url has a malformed escape');
  }
}

/**
 * GETs `url` following at most 5 redirects by hand, so the Hub token goes to the Hub only
 * (never to the CDN host a redirect names). Upstream 4xx: permanent; 5xx or network: retryable.
 */
export async function fetchCapped(url: string, max: number, hfToken?: string): Promise<Uint8Array> {
  const origin = new URL(url).host;
  let current = url;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const sameHost = new URL(current).host === origin;
    const headers: Record<string, string> = { accept: '*/*' };
    if (hfToken && sameHost && new URL(current).hostname === HF_HOST) headers.authorization = `Bearer ${hfToken}`;
    let res: Response;
    try {
      res = await fetch(current, { method: 'GET', headers, redirect: 'manual', signal: AbortSignal.timeout(60_000) });
    } catch (e) {
      throw new ApiError(422, 'source_fetch_failed', `GET ${url} failed (${e instanceof Error ? e.message : String(e)})`, { url }, true);
    }
    if (res.status >= 300 && res.status < 400) {
      const location = res.headers.get('location');
      await res.body?.cancel();
      if (!location) throw new ApiError(422, 'source_fetch_failed', `GET ${current} answered ${res.status} without a Location`, { url });
      const next = new URL(location, current);
      if (next.protocol !== 'https:') throw new ApiError(422, 'source_fetch_failed', `GET ${current} redirects off https`, { url });
      current = next.href;
      continue;
    }
    if (!res.ok) {
      await res.body?.cancel();
      const code = res.status === 404 ? 'source_not_found' : 'source_fetch_failed';
      throw new ApiError(
        422,
        code,
        `GET ${url} answered ${res.status}`,
        { url, upstream_status: res.status },
        res.status >= 500 || res.status === 429,
      );
    }
    const declared = res.headers.get('content-length');
    const tooLarge = () => new ApiError(413, 'adapter_too_large', `${url} is larger than ${max} bytes`, { url, limit_bytes: max });
    if (declared !== null && Number(declared) > max) {
      await res.body?.cancel();
      throw tooLarge();
    }
    if (!res.body) return new Uint8Array(0);
    return readStreamCapped(res.body, max, tooLarge);
  }
  throw new ApiError(422, 'source_fetch_failed', `GET ${url}: more than ${MAX_REDIRECTS} redirects`, { url });
}

/** Both PEFT files from a directory URL; together at most `max` bytes. */
export async function fetchAdapterFiles(
  dir: string,
  max: number,
  hfToken?: string,
): Promise<{ configBytes: Uint8Array; weights: Uint8Array }> {
  const configBytes = await fetchCapped(dir + ADAPTER_CONFIG_FILE, Math.min(max, 1024 * 1024), hfToken);
  const weights = await fetchCapped(dir + ADAPTER_WEIGHTS_FILE, max - configBytes.byteLength, hfToken);
  return { configBytes, weights };
}
