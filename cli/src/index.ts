export { fuse } from './commands/fuse.ts';
export { inspect } from './commands/inspect.ts';
export { main } from './main.ts';
