declare module '*.safetensors' {
  const bytes: ArrayBuffer;
  export default bytes;
}

// Secrets (`wrangler secret put`; miniflare bindings in tests): wrangler types cannot see them.
declare namespace Cloudflare {
  interface Env {
    ADMIN_TOKEN?: string;
    HF_WEBHOOK_SECRET?: string;
    GENERIC_WEBHOOK_SECRET?: string;
    /** Read token for private Hub repos. */
    HF_TOKEN?: string;
  }
}
