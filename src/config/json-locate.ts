/**
 * Where each value of a JSON document was written, so that config errors in JSON files carry line:column too.
 * Run only on text that `JSON.parse` accepted. Paths are dotted: `port`, `services.0.mfa.1`; `<path>#key` is where
 * an object member's name starts.
 */
/** A place in a config file, 1-based. */
export interface Position {
  line: number;
  column: number;
}

/** Turns offsets in `text` into line:column (1-based), by a binary search over where the lines start. */
export function positions(text: string): (offset: number) => Position {
  const lineStarts = [0];
  for (let i = 0; i < text.length; i++) if (text[i] === '\n') lineStarts.push(i + 1);
  return (offset) => {
    let lo = 0;
    let hi = lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((lineStarts[mid] as number) <= offset) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, column: offset - (lineStarts[lo] as number) + 1 };
  };
}

export function locateJson(text: string): Map<string, Position> {
  const out = new Map<string, Position>();
  const at = positions(text);
  let pos = 0;
  const space = (): void => {
    while (pos < text.length && /\s/.test(text[pos] as string)) pos++;
  };
  const string = (): string => {
    const start = pos++;
    while (text[pos] !== '"') pos += text[pos] === '\\' ? 2 : 1;
    pos++;
    return JSON.parse(text.slice(start, pos)) as string;
  };
  const value = (path: string): void => {
    space();
    if (path !== '') out.set(path, at(pos));
    const prefix = path === '' ? '' : `${path}.`;
    const c = text[pos];
    if (c === '{') {
      pos++;
      space();
      while (text[pos] !== '}') {
        const keyAt = pos;
        const key = string();
        out.set(`${prefix}${key}#key`, at(keyAt));
        space();
        pos++; // ':'
        value(`${prefix}${key}`);
        space();
        if (text[pos] === ',') pos++;
        space();
      }
      pos++;
    } else if (c === '[') {
      pos++;
      space();
      for (let i = 0; text[pos] !== ']'; i++) {
        value(`${prefix}${i}`);
        space();
        if (text[pos] === ',') pos++;
        space();
      }
      pos++;
    } else if (c === '"') {
      string();
    } else {
      while (pos < text.length && /[^\s,\]}]/.test(text[pos] as string)) pos++;
    }
  };
  value('');
  return out;
}
