import { describe, expect, it } from 'vitest';
import { TextAssembler } from './text.ts';
import type { TextModel } from './tokenizer.ts';

/** Ids are indexes into these pieces; "##x" continues a word, as WordPiece decodes. */
const PIECES = ['hello', 'world', '##s', 'stop', 'here', '\uFFFD', 'é'];
const model: TextModel = {
  encode: () => [],
  decode: (ids) =>
    ids
      .map((i) => PIECES[i] as string)
      .reduce((s, p) => (p.startsWith('##') ? s + p.slice(2) : s ? `${s} ${p}` : p), '')
      // A lone replacement character followed by its completion decodes to one character.
      .replace('\uFFFD é', 'é'),
  chatTemplate: false,
  renderChat: () => '',
};

describe('TextAssembler', () => {
  it('hands out the growth of the decoded text, merging word pieces', () => {
    const a = new TextAssembler(model);
    expect([a.push(0), a.push(1), a.push(2)]).toEqual(['hello', ' world', 's']);
    expect(a.finish()).toBe('');
    expect(a.output).toBe('hello worlds');
  });

  it('holds back a trailing partial character', () => {
    const a = new TextAssembler(model);
    expect(a.push(0)).toBe('hello');
    expect(a.push(5)).toBe(' ');
    expect(a.push(6)).toBe('é');
  });

  it('ends before a stop string, even one that spans tokens, and never shows its start', () => {
    const a = new TextAssembler(model, ['stop here']);
    const out = [a.push(0), a.push(3), a.push(4)];
    expect(out.join('')).toBe('hello ');
    // "stop" could begin "stop here": held back until the next token decides.
    expect(out[1]).toBe(' ');
    expect(a.stopped).toBe(true);
    expect(a.tokenIds).toEqual([0, 3, 4]);
    expect(a.push(1)).toBe('');
    expect(a.finish()).toBe('');
  });

  it('releases held-back text when the generation ends without a stop', () => {
    const a = new TextAssembler(model, ['stop here']);
    a.push(0);
    a.push(3);
    expect(a.finish()).toBe('stop');
    expect(a.output).toBe('hello stop');
  });

  it('without a tokenizer keeps ids and gives no text', () => {
    const a = new TextAssembler(undefined, []);
    expect(a.push(7)).toBe('');
    expect(a.tokenIds).toEqual([7]);
  });
});
