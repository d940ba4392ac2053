export * from './fuse.ts';
export * from './mix.ts';
export * from './terms.ts';
export * from './unmerged.ts';
