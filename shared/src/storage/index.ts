export * from './artifact.ts';
export * from './digest.ts';
export * from './keys.ts';
export * from './memory.ts';
export * from './store.ts';
