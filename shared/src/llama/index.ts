export * from './forward.ts';
export * from './weights.ts';
