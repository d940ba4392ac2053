/**
 * Turning generated ids into text as they arrive: each token's text is the growth of the decoded
 * whole (tokenizers merge pieces: "##ing", byte-level fragments of one character), held back while
 * it ends in a partial character or in what could be the start of a stop string. Stop strings end the
 * text before them, as OpenAI's `stop` does.
 */
import type { TextModel } from './tokenizer.ts';

export class TextAssembler {
  private readonly ids: number[] = [];
  /** Text already handed out. */
  private sent = '';
  private done = false;
  constructor(
    private readonly text: TextModel | undefined,
    private readonly stops: readonly string[] = [],
  ) {}

  /** Whether a stop string was met: the generation should end here. */
  get stopped(): boolean {
    return this.done;
  }

  /** The ids taken so far (up to and including the one that completed a stop string). */
  get tokenIds(): readonly number[] {
    return this.ids;
  }

  /** Adds one id; returns the text that may be shown now. */
  push(id: number): string {
    if (this.done) return '';
    this.ids.push(id);
    if (!this.text) return '';
    const full = this.text.decode(this.ids);
    for (const s of this.stops) {
      const at = s ? full.indexOf(s) : -1;
      if (at >= 0) {
        this.done = true;
        return this.emit(full.slice(0, at));
      }
    }
    let ready = full;
    // A replacement character at the end is usually half of a multi-byte character.
    while (ready.endsWith('\uFFFD')) ready = ready.slice(0, -1);
    ready = ready.slice(0, Math.max(this.sent.length, ready.length - this.partialStop(ready)));
    return this.emit(ready);
  }

  /** Length of the longest end of `text` that a stop string begins with: the part not shown yet. */
  private partialStop(text: string): number {
    let best = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, text.length); k > best; k--) {
        if (text.endsWith(s.slice(0, k))) {
          best = k;
          break;
        }
      }
    }
    return best;
  }

  /** The rest, once the generation has ended. */
  finish(): string {
    if (this.done || !this.text) return '';
    return this.emit(this.text.decode(this.ids));
  }

  private emit(upTo: string): string {
    // Sent text is never taken back (decoding more ids rarely rewrites a tail; the new part still goes out).
    if (upTo.length <= this.sent.length) return '';
    const delta = upTo.slice(this.sent.length);
    this.sent = upTo;
    return delta;
  }

  /** All text handed out. */
  get output(): string {
    return this.sent;
  }
}
