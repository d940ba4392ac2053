// Not in index.ts: workerd treats every export of the main module as an entrypoint.
export const SERVICE = 'gpu';
export const VERSION = '0.1.0';
