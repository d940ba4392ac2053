// Secrets (`wrangler secret put`; miniflare bindings in tests): wrangler types cannot see them.
declare namespace Cloudflare {
  interface Env {
    /** The operator token (the merge service's): guards PUT /admin/tokenizers/:model. */
    ADMIN_TOKEN?: string;
  }
}

// The tests import the golden fixtures as ArrayBuffers (wrangler rule "Data").
declare module '*.safetensors' {
  const bytes: ArrayBuffer;
  export default bytes;
}
