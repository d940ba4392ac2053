// Secrets (`wrangler secret put`; miniflare bindings in tests): wrangler types cannot see them.
declare namespace Cloudflare {
  interface Env {
    /** The shared token of the runners: they send it on every call, and the gateway sends it to them. */
    RUNNER_TOKEN?: string;
  }
}
