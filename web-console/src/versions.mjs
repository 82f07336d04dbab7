// Version ordering for the four schemes of docs/protocol.md ("Version schemes"), the same rules
// as shared/src/version.cpp. Pure; never throws: parse() returns null for text that does not fit.

const MAX_U64 = (1n << 64n) - 1n;
const IDENT = /^[0-9A-Za-z-]+$/;
const DIGITS = /^[0-9]+$/;

function parseUint(s, allowLeadingZero = true) {
  if (typeof s !== 'string' || s.length === 0 || s.length > 20 || !DIGITS.test(s)) return null;
  if (!allowLeadingZero && s.length > 1 && s[0] === '0') return null;
  const v = BigInt(s);
  return v > MAX_U64 ? null : v;
}

function daysIn(y, m) {
  if (m === 2) return (y % 4n === 0n && y % 100n !== 0n) || y % 400n === 0n ? 29 : 28;
  return [4, 6, 9, 11].includes(m) ? 30 : 31;
}

function parseInner(text, scheme) {
  switch (scheme) {
    case 'integer': {
      const n = parseUint(text);
      return n === null ? null : { scheme, inner: scheme, flavour: '', core: [n], pre: null };
    }
    case 'date': {
      let date = text;
      let build = 0n;
      const dot = text.indexOf('.');
      if (dot >= 0) {
        const b = parseUint(text.slice(dot + 1));
        if (b === null) return null;
        build = b;
        date = text.slice(0, dot);
      }
      if (date.length !== 10 || date[4] !== '-' || date[7] !== '-') return null;
      const y = parseUint(date.slice(0, 4));
      const m = parseUint(date.slice(5, 7));
      const d = parseUint(date.slice(8, 10));
      if (y === null || m === null || d === null) return null;
      if (m < 1n || m > 12n || d < 1n || Number(d) > daysIn(y, Number(m))) return null;
      return { scheme, inner: scheme, flavour: '', core: [y, m, d, build], pre: null };
    }
    case 'semver': {
      let s = text.startsWith('v') ? text.slice(1) : text;
      const plus = s.indexOf('+');
      if (plus >= 0) {
        if (!s.slice(plus + 1).split('.').every((id) => IDENT.test(id))) return null;
        s = s.slice(0, plus);
      }
      let pre = null;
      const dash = s.indexOf('-');
      if (dash >= 0) {
        pre = [];
        for (const id of s.slice(dash + 1).split('.')) {
          if (!IDENT.test(id)) return null;
          if (DIGITS.test(id)) {
            const n = parseUint(id, false);
            if (n === null) return null;
            pre.push({ alpha: false, number: n, text: '' });
          } else {
            pre.push({ alpha: true, number: 0n, text: id });
          }
        }
        s = s.slice(0, dash);
      }
      const nums = s.split('.');
      if (nums.length !== 3) return null;
      const core = [];
      for (const n of nums) {
        const v = parseUint(n, false);
        if (v === null) return null;
        core.push(v);
      }
      return { scheme, inner: scheme, flavour: '', core, pre };
    }
    case 'tag': {
      const us = text.lastIndexOf('_');
      if (us <= 0 || us + 1 === text.length) return null;
      const flavour = text.slice(0, us);
      if (!/^[0-9A-Za-z._-]+$/.test(flavour)) return null;
      const rest = text.slice(us + 1);
      for (const inner of ['date', 'integer', 'semver']) {
        const p = parseInner(rest, inner);
        if (p) return { ...p, scheme: 'tag', inner, flavour };
      }
      return null;
    }
    default:
      return null;
  }
}

/** Parses `text` in `scheme` (semver | date | tag | integer); null when it does not fit. */
export function parseVersion(text, scheme) {
  if (typeof text !== 'string' || text.length === 0 || text.length > 128) return null;
  return parseInner(text, scheme);
}

function cmpBig(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

function cmpCore(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const c = cmpBig(a[i], b[i]);
    if (c) return c;
  }
  return cmpBig(BigInt(a.length), BigInt(b.length));
}

function cmpPart(a, b) {
  if (a.alpha !== b.alpha) return a.alpha ? 1 : -1; // numeric identifiers sort before alphanumeric
  if (!a.alpha) return cmpBig(a.number, b.number);
  return a.text < b.text ? -1 : a.text > b.text ? 1 : 0;
}

/**
 * Compares two version strings in one scheme: -1, 0 or 1, or null when either does not parse or
 * they do not order (different tag flavours or inner schemes): never a guess for "newer".
 */
export function compareVersions(a, b, scheme) {
  const x = parseVersion(a, scheme);
  const y = parseVersion(b, scheme);
  if (!x || !y || x.inner !== y.inner || x.flavour !== y.flavour) return null;
  const c = cmpCore(x.core, y.core);
  if (c) return c;
  if ((x.pre === null) !== (y.pre === null)) return x.pre ? -1 : 1;
  if (x.pre) {
    const n = Math.min(x.pre.length, y.pre.length);
    for (let i = 0; i < n; i++) {
      const p = cmpPart(x.pre[i], y.pre[i]);
      if (p) return p;
    }
    return cmpBig(BigInt(x.pre.length), BigInt(y.pre.length));
  }
  return 0;
}
