import { describe, expect, it } from 'vitest';
import { parseAdapterArg } from './adapter-arg.ts';

describe('--adapter <dir>[:weight]', () => {
  it.each([
    ['a/b', { dir: 'a/b', weight: 1 }],
    ['a/b:0.5', { dir: 'a/b', weight: 0.5 }],
    ['a/b:-0.25', { dir: 'a/b', weight: -0.25 }],
    ['x:y/dir:2', { dir: 'x:y/dir', weight: 2 }],
    ['dir:with:colons', { dir: 'dir:with:colons', weight: 1 }],
    ['a:1e-1', { dir: 'a', weight: 0.1 }],
  ])('%s', (arg, want) => expect(parseAdapterArg(arg)).toEqual(want));
  it('refuses a weight with no directory', () => expect(() => parseAdapterArg(':0.5')).toThrow(/missing the directory/));
});
