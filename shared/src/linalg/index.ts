export * from './lowrank.ts';
export * from './matmul.ts';
export * from './matrix.ts';
export * from './qr.ts';
export * from './randomized.ts';
export * from './rng.ts';
export * from './svd.ts';
