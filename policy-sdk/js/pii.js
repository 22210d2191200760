// The mock PII detector (node only): compiles pii-patterns.json (a copy of
// policy-sdk/pii/patterns.json, kept equal by a test) at runtime and applies the same
// checks, boundary rule and overlap rule as the host's detector (policy-sdk/src/pii.rs).
// Findings are {kind, start, end} in UTF-8 byte offsets, as the `pii.detect` import gives.
import { readFileSync } from 'node:fs';
import { utf8Length } from './types.js';

const digitsOf = (s) => [...s].filter((c) => c >= '0' && c <= '9').map(Number);

/** The checks named in patterns.json. */
export const CHECKS = Object.freeze({
  none: () => true,
  luhn(s) {
    const d = digitsOf(s);
    if (d.length < 13 || d.length > 19 || d.every((x) => x === d[0])) return false;
    if (s.includes(' ') && s.includes('-')) return false;
    const sum = d.reverse().reduce((acc, x, i) => acc + (i % 2 === 1 ? (x * 2 > 9 ? x * 2 - 9 : x * 2) : x), 0);
    return sum % 10 === 0;
  },
  'us-ssn'(s) {
    const [area, group, serial] = s.split('-');
    if (serial === undefined) return false;
    return area !== '000' && area !== '666' && !area.startsWith('9') && group !== '00' && serial !== '0000';
  },
  'iban-mod97'(s) {
    const compact = [...s].filter((c) => !/\s/u.test(c));
    if (compact.length < 15 || compact.length > 34) return false;
    let rem = 0;
    for (const c of [...compact.slice(4), ...compact.slice(0, 4)]) {
      if (!/^[0-9A-Za-z]$/.test(c)) return false;
      const v = parseInt(c, 36);
      rem = v >= 10 ? (rem * 100 + v) % 97 : (rem * 10 + v) % 97;
    }
    return rem === 1;
  },
  'phone-intl-digits': (s) => {
    const n = digitsOf(s).length;
    return n >= 8 && n <= 15;
  },
  ipv4: (s) => s.split('.').every((o) => /^\d{1,5}$/.test(o) && Number(o) <= 255 && (o.length === 1 || !o.startsWith('0'))),
  ipv6: (s) => (s.match(/:/g) ?? []).length >= 2 && s.split(':').filter((g) => g !== '').length >= 3 && isIpv6(s),
});

/** Rust's `Ipv6Addr::from_str` for text without an IPv4 suffix (the pattern has no dots). */
function isIpv6(s) {
  const groups = (part) => (part === '' ? [] : part.split(':'));
  const valid = (gs) => gs.every((g) => /^[0-9A-Fa-f]{1,4}$/.test(g));
  const halves = s.split('::');
  if (halves.length === 1) return groups(s).length === 8 && valid(groups(s));
  if (halves.length !== 2) return false;
  const [head, tail] = halves.map(groups);
  return valid(head) && valid(tail) && head.length + tail.length <= 7;
}

const isWord = (c) => c !== undefined && /^[A-Za-z0-9_]$/.test(c);
const isAlnum = (c) => c !== undefined && /^[A-Za-z0-9]$/.test(c);

/** The boundary rule of patterns.json, on UTF-16 indices (every character tested is ASCII). */
function bounded(text, start, end, kind) {
  const before = start > 0 ? text[start - 1] : undefined;
  const after = text[end];
  const joins = (c) => isWord(c) || c === '-' || c === '+' || c === '/';
  if (joins(before) || joins(after)) return false;
  if (before === '.' && start >= 2 && isAlnum(text[start - 2])) return false;
  if (kind !== 'email' && after === '.' && isAlnum(text[end + 1])) return false;
  if (kind === 'ip-address' && (before === ':' || after === ':')) return false;
  return true;
}

/** The shared patterns, compiled: [{kind, regex, check}] in priority order. */
export function loadPatterns(url = new URL('./pii-patterns.json', import.meta.url)) {
  const file = JSON.parse(readFileSync(url, 'utf8'));
  return file.patterns.map((p) => {
    const check = CHECKS[p.check];
    if (!check) throw new Error(`pii patterns: unknown check ${JSON.stringify(p.check)}`);
    return { kind: p.kind, regex: new RegExp(p.regex, 'g'), check };
  });
}

let compiled;

/** PII in `text`: [{kind, start, end}] sorted by start, non-overlapping, UTF-8 byte offsets. */
export function detect(text) {
  compiled ??= loadPatterns();
  const candidates = [];
  compiled.forEach((p, priority) => {
    for (const m of text.matchAll(p.regex)) {
      const start = m.index;
      let end = start + m[0].length;
      while (p.kind === 'email' && end > start && text[end - 1] === '.') end -= 1;
      if (bounded(text, start, end, p.kind) && p.check(text.slice(start, end))) {
        candidates.push({ start, end, priority, kind: p.kind });
      }
    }
  });
  candidates.sort((a, b) => a.start - b.start || b.end - a.end || a.priority - b.priority);
  const out = [];
  for (const c of candidates) {
    if (out.length === 0 || c.start >= out[out.length - 1].endUtf16) out.push({ kind: c.kind, start: c.start, endUtf16: c.end });
  }
  return out.map((m) => ({
    kind: m.kind,
    start: utf8Length(text.slice(0, m.start)),
    end: utf8Length(text.slice(0, m.endUtf16)),
  }));
}
