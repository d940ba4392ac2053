export * from './build.ts';
export * from './fuse-model.ts';
export * from './merge-adapter.ts';
export * from './payload.ts';
