/**
 * Terminal-safe text. Names and messages from a server, a manifest or a file reach the operator's
 * terminal through say() and the progress line; a control character in them could move the
 * cursor, erase the real output and print a fake "verified" line over it (issue 18, finding 3),
 * and a bidi control could make a name read differently from what it is. Every such character is
 * shown as a visible escape instead: C0 (but the line feed and tab that our own messages use),
 * DEL, C1, and the Unicode bidi controls (U+061C, U+200E/F, U+202A-202E, U+2066-2069).
 */
const UNSAFE = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

export function printable(text: string): string {
  return text.replace(UNSAFE, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16).padStart(4, "0")}`;
  });
}
