export * from './header.ts';
export * from './read.ts';
export * from './sharded.ts';
export * from './write.ts';
