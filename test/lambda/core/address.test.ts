import { describe, expect, it } from 'vitest';
import {
  domainOf,
  identityCovers,
  isDomainName,
  isEmailAddress,
  needsSmtpUtf8,
  parseMailbox,
  sameAddress,
  toAsciiDomain,
} from '../../../lambda/core/address.ts';

const INVALID_ADDRESS = 'is not a valid email address (expected "a@example.com" or "Name <a@example.com>")';
const BAD_NAME = 'has a display name with unbalanced quotes or angle brackets';
const BAD_IDN = 'has a domain that is not a valid international domain name (IDNA)';
const BAD_COMMENT = 'has a comment with unbalanced parentheses';
const TOO_LONG = 'is longer than 254 octets, the most SMTP carries';
const DISPLAYS_FALSELY = 'which would make it display as something it is not';

/** A domain of 250 characters: with "ab@" the address is exactly 254. */
const LONG_DOMAIN = `${'a'.repeat(61)}.${'b'.repeat(61)}.${'c'.repeat(61)}.${'d'.repeat(61)}.com`;

describe('parseMailbox', () => {
  it('parses a bare address without a name', () => {
    expect(parseMailbox('ana@example.com')).toEqual({ ok: true, mailbox: { address: 'ana@example.com' } });
  });

  it('trims whitespace around a bare address', () => {
    expect(parseMailbox('  ana@example.com \t')).toEqual({
      ok: true,
      mailbox: { address: 'ana@example.com' },
    });
  });

  it('parses an address in angle brackets without a name', () => {
    expect(parseMailbox('<ana@example.com>')).toEqual({ ok: true, mailbox: { address: 'ana@example.com' } });
  });

  it('parses an unquoted display name with non-ASCII characters', () => {
    expect(parseMailbox('Ana Pérez <ana@example.com>')).toEqual({
      ok: true,
      mailbox: { name: 'Ana Pérez', address: 'ana@example.com' },
    });
  });

  it('parses a quoted display name containing a comma', () => {
    expect(parseMailbox('"Doe, Jane" <jane@example.com>')).toEqual({
      ok: true,
      mailbox: { name: 'Doe, Jane', address: 'jane@example.com' },
    });
  });

  it('unescapes escaped quotes inside a quoted display name', () => {
    expect(parseMailbox('"Ana \\"the boss\\" Pérez" <ana@example.com>')).toEqual({
      ok: true,
      mailbox: { name: 'Ana "the boss" Pérez', address: 'ana@example.com' },
    });
  });

  it('treats an empty quoted display name as no name', () => {
    expect(parseMailbox('"" <ana@example.com>')).toEqual({
      ok: true,
      mailbox: { address: 'ana@example.com' },
    });
  });

  it('rejects a display name with an unbalanced quote', () => {
    expect(parseMailbox('"Ana <ana@example.com>')).toEqual({ ok: false, reason: BAD_NAME });
  });

  it('rejects a quoted display name whose closing quote is escaped', () => {
    expect(parseMailbox('"Ana\\" <ana@example.com>')).toEqual({ ok: false, reason: BAD_NAME });
  });

  it('accepts a display name mixing words and a quoted string', () => {
    expect(parseMailbox('Ana "Q" <ana@example.com>')).toEqual({
      ok: true,
      mailbox: { name: 'Ana Q', address: 'ana@example.com' },
    });
  });

  it('rejects a display name with angle brackets', () => {
    expect(parseMailbox('Ana <x> <ana@example.com>')).toEqual({ ok: false, reason: BAD_NAME });
  });

  it('rejects text after the closing angle bracket', () => {
    expect(parseMailbox('Ana <ana@example.com> extra')).toEqual({ ok: false, reason: INVALID_ADDRESS });
  });

  it('rejects an invalid address inside angle brackets', () => {
    expect(parseMailbox('Ana <ana@@example.com>')).toEqual({ ok: false, reason: INVALID_ADDRESS });
  });

  it('rejects CR or LF anywhere as header injection', () => {
    expect(parseMailbox('Ana <ana@example.com>\r\nBcc: victim@example.com')).toEqual({
      ok: false,
      reason: 'must not contain CR or LF characters (header injection)',
    });
  });
});

describe('parseMailbox with international domains', () => {
  it('converts an international domain to punycode', () => {
    expect(parseMailbox('ana@bücher.de')).toEqual({ ok: true, mailbox: { address: 'ana@xn--bcher-kva.de' } });
  });

  it('converts the domain of a name-addr and keeps the name', () => {
    expect(parseMailbox('Ana <ana@bücher.de>')).toEqual({
      ok: true,
      mailbox: { name: 'Ana', address: 'ana@xn--bcher-kva.de' },
    });
  });

  it('keeps the case of an ASCII domain as given', () => {
    expect(parseMailbox('Ana@Example.COM')).toEqual({ ok: true, mailbox: { address: 'Ana@Example.COM' } });
  });

  it('takes an ideographic full stop as a dot in an international domain', () => {
    expect(parseMailbox('ana@例子。广告')).toEqual({
      ok: true,
      mailbox: { address: 'ana@xn--fsqu00a.xn--4rr70v' },
    });
  });

  it('rejects a domain IDNA cannot convert, saying so', () => {
    expect(parseMailbox('ana@\u0301bücher.de')).toEqual({ ok: false, reason: BAD_IDN });
  });

  it('rejects an international domain without a top-level domain', () => {
    expect(parseMailbox('ana@bücher')).toEqual({ ok: false, reason: INVALID_ADDRESS });
  });

  it('rejects a domain with characters a URL parser would cut off', () => {
    expect(parseMailbox('ana@bücher.de/x')).toEqual({ ok: false, reason: INVALID_ADDRESS });
  });

  it('refuses an address longer than 254 octets once its domain is ASCII', () => {
    expect(parseMailbox(`ab@${LONG_DOMAIN}`).ok).toBe(true);
    expect(parseMailbox(`abc@${LONG_DOMAIN}`)).toEqual({ ok: false, reason: TOO_LONG });
  });
});

describe('parseMailbox with quoted local parts', () => {
  it('accepts a quoted local part with a space, keeping the quotes', () => {
    expect(parseMailbox('"john doe"@example.com')).toEqual({
      ok: true,
      mailbox: { address: '"john doe"@example.com' },
    });
  });

  it('accepts an @ inside a quoted local part', () => {
    expect(parseMailbox('"a@b"@example.com')).toEqual({
      ok: true,
      mailbox: { address: '"a@b"@example.com' },
    });
  });

  it('accepts an escaped quote inside a quoted local part, keeping the escape', () => {
    expect(parseMailbox('"x\\"y"@example.com')).toEqual({
      ok: true,
      mailbox: { address: '"x\\"y"@example.com' },
    });
  });

  it('accepts a quoted local part inside angle brackets after a display name', () => {
    expect(parseMailbox('John <"john doe"@example.com>')).toEqual({
      ok: true,
      mailbox: { name: 'John', address: '"john doe"@example.com' },
    });
  });

  it('accepts angle brackets and parentheses inside a quoted local part', () => {
    expect(parseMailbox('John <"a<b>(c)"@example.com>')).toEqual({
      ok: true,
      mailbox: { name: 'John', address: '"a<b>(c)"@example.com' },
    });
  });

  it('rejects a quoted local part that is not closed', () => {
    expect(parseMailbox('"john doe@example.com')).toEqual({ ok: false, reason: INVALID_ADDRESS });
  });

  it('rejects a quoted string followed by more local part', () => {
    expect(parseMailbox('"john".doe@example.com')).toEqual({ ok: false, reason: INVALID_ADDRESS });
  });
});

describe('parseMailbox with comments', () => {
  it('makes a trailing comment the display name of a bare address', () => {
    expect(parseMailbox('john@example.com (John Smith)')).toEqual({
      ok: true,
      mailbox: { name: 'John Smith', address: 'john@example.com' },
    });
  });

  it('makes a leading comment the display name of a bare address', () => {
    expect(parseMailbox('(c) john@example.com')).toEqual({
      ok: true,
      mailbox: { name: 'c', address: 'john@example.com' },
    });
  });

  it('drops a comment after a name-addr, keeping its display name', () => {
    expect(parseMailbox('John <john@example.com> (sales)')).toEqual({
      ok: true,
      mailbox: { name: 'John', address: 'john@example.com' },
    });
  });

  it('drops a comment inside the display name', () => {
    expect(parseMailbox('John (the boss) Smith <john@example.com>')).toEqual({
      ok: true,
      mailbox: { name: 'John Smith', address: 'john@example.com' },
    });
  });

  it('drops a comment inside the angle brackets', () => {
    expect(parseMailbox('John <john@example.com (work)>')).toEqual({
      ok: true,
      mailbox: { name: 'John', address: 'john@example.com' },
    });
  });

  it('keeps nested parentheses as part of the comment', () => {
    expect(parseMailbox('john@example.com (John (Johnny) Smith)')).toEqual({
      ok: true,
      mailbox: { name: 'John (Johnny) Smith', address: 'john@example.com' },
    });
  });

  it('unescapes a backslash-escaped parenthesis in a comment', () => {
    expect(parseMailbox('john@example.com (smile \\) here)')).toEqual({
      ok: true,
      mailbox: { name: 'smile ) here', address: 'john@example.com' },
    });
  });

  it('keeps parentheses inside a quoted display name as text', () => {
    expect(parseMailbox('"John (Sales)" <john@example.com>')).toEqual({
      ok: true,
      mailbox: { name: 'John (Sales)', address: 'john@example.com' },
    });
  });

  it('treats an empty comment as no name', () => {
    expect(parseMailbox('john@example.com ()')).toEqual({
      ok: true,
      mailbox: { address: 'john@example.com' },
    });
  });

  it('rejects a comment that is not closed', () => {
    expect(parseMailbox('john@example.com (John')).toEqual({ ok: false, reason: BAD_COMMENT });
  });

  it('rejects a closing parenthesis without an opening one', () => {
    expect(parseMailbox('John) <john@example.com>')).toEqual({ ok: false, reason: BAD_COMMENT });
  });

  it('rejects a comment that would become an unsafe display name', () => {
    expect(parseMailbox('john@example.com (\u202Efdp.exe)')).toEqual({
      ok: false,
      reason: `display name contains a bidirectional override or isolate (U+202E), ${DISPLAYS_FALSELY}`,
    });
  });
});

describe('parseMailbox with UTF-8 local parts', () => {
  it('accepts a non-ASCII local part as written', () => {
    expect(parseMailbox('josé@example.com')).toEqual({ ok: true, mailbox: { address: 'josé@example.com' } });
  });

  it('keeps a non-ASCII local part and converts a non-ASCII domain', () => {
    expect(parseMailbox('用户@例子.广告')).toEqual({
      ok: true,
      mailbox: { address: '用户@xn--fsqu00a.xn--4rr70v' },
    });
  });

  it('accepts non-ASCII characters inside a quoted local part', () => {
    expect(parseMailbox('"josé m"@example.com')).toEqual({
      ok: true,
      mailbox: { address: '"josé m"@example.com' },
    });
  });

  it('rejects a no-break space in a local part', () => {
    expect(parseMailbox('jos\u00A0e@example.com')).toEqual({ ok: false, reason: INVALID_ADDRESS });
  });

  it('rejects a zero-width space in an address, naming the character', () => {
    expect(parseMailbox('jo\u200Bse@example.com')).toEqual({
      ok: false,
      reason: `address contains a zero-width space (U+200B), ${DISPLAYS_FALSELY}`,
    });
  });

  it('rejects a bidirectional override in an address, naming the character', () => {
    expect(parseMailbox('Ana <ana\u202Egpj.exe@example.com>')).toEqual({
      ok: false,
      reason: `address contains a bidirectional override or isolate (U+202E), ${DISPLAYS_FALSELY}`,
    });
  });

  it('counts a UTF-8 local part in octets against the 254 limit', () => {
    // "é" is two octets: 253 characters, 254 octets.
    expect(parseMailbox(`é@${LONG_DOMAIN}`).ok).toBe(true);
    expect(parseMailbox(`éa@${LONG_DOMAIN}`)).toEqual({ ok: false, reason: TOO_LONG });
  });
});

describe('parseMailbox display name safety', () => {
  it('rejects a display name with a bidirectional override', () => {
    expect(parseMailbox('"Invoice \u202Efdp.exe" <ana@example.com>')).toEqual({
      ok: false,
      reason: `display name contains a bidirectional override or isolate (U+202E), ${DISPLAYS_FALSELY}`,
    });
  });

  it('rejects a display name with a zero-width space', () => {
    expect(parseMailbox('Pay\u200Bpal <ana@example.com>')).toEqual({
      ok: false,
      reason: `display name contains a zero-width space (U+200B), ${DISPLAYS_FALSELY}`,
    });
  });

  it('rejects a display name with a NUL character', () => {
    expect(parseMailbox('"Ana\u0000" <ana@example.com>')).toEqual({
      ok: false,
      reason: `display name contains a control character (U+0000), ${DISPLAYS_FALSELY}`,
    });
  });

  it('accepts a display name with a zero-width joiner, which scripts need', () => {
    expect(parseMailbox('"می\u200Cخواهم" <ana@example.com>')).toEqual({
      ok: true,
      mailbox: { name: 'می\u200Cخواهم', address: 'ana@example.com' },
    });
  });

  it('collapses runs of spaces outside quotes in a display name', () => {
    expect(parseMailbox('Ana   Pérez <ana@example.com>')).toEqual({
      ok: true,
      mailbox: { name: 'Ana Pérez', address: 'ana@example.com' },
    });
  });
});

describe('isEmailAddress', () => {
  it.each([
    'a@example.com',
    'first.last+tag@sub.example.co.uk',
    "o'brien@example.org",
    'x@xn--bcher-kva.example',
    'ana@bücher.de',
    '"john doe"@example.com',
    '"a@b"@example.com',
    'josé@example.com',
    '用户@例子.广告',
  ])('accepts %s', (address) => {
    expect(isEmailAddress(address)).toBe(true);
  });

  it.each([
    ['no at sign', 'example.com'],
    ['no domain dot', 'a@localhost'],
    ['a leading dot in the local part', '.a@example.com'],
    ['two consecutive dots', 'a..b@example.com'],
    ['a one-letter top-level domain', 'a@example.c'],
    ['a numeric top-level domain', 'a@example.123'],
    ['a domain label starting with a hyphen', 'a@-example.com'],
    ['spaces', 'a b@example.com'],
    ['a display name', 'Ana <a@example.com>'],
    ['angle brackets', '<a@example.com>'],
    ['a comment', 'a@example.com (Ana)'],
    ['surrounding spaces', ' a@example.com'],
    ['a domain IDNA cannot convert', 'a@\u0301bücher.de'],
    ['a zero-width space', 'a\u200Bb@example.com'],
    ['a control character in the local part', 'a\u0085b@example.com'],
  ])('rejects an address with %s', (_reason, address) => {
    expect(isEmailAddress(address)).toBe(false);
  });

  it('accepts an address of exactly 254 characters and rejects one of 255', () => {
    const longest = `ab@${LONG_DOMAIN}`;
    expect(longest).toHaveLength(254);
    expect(isEmailAddress(longest)).toBe(true);
    expect(isEmailAddress(`x${longest}`)).toBe(false);
  });
});

describe('isDomainName', () => {
  it('accepts a multi-label domain', () => {
    expect(isDomainName('mail.example.com')).toBe(true);
  });

  it('rejects a single label', () => {
    expect(isDomainName('localhost')).toBe(false);
  });

  it('rejects an email address', () => {
    expect(isDomainName('a@example.com')).toBe(false);
  });

  it('rejects a label ending with a hyphen', () => {
    expect(isDomainName('example-.com')).toBe(false);
  });

  it('accepts an international domain', () => {
    expect(isDomainName('bücher.de')).toBe(true);
  });

  it('rejects a domain IDNA cannot convert', () => {
    expect(isDomainName('\u0301bücher.de')).toBe(false);
  });
});

describe('toAsciiDomain', () => {
  it('converts an international domain to punycode', () => {
    expect(toAsciiDomain('bücher.de')).toBe('xn--bcher-kva.de');
  });

  it('lower-cases an international domain, as IDNA maps it', () => {
    expect(toAsciiDomain('Bücher.DE')).toBe('xn--bcher-kva.de');
  });

  it('returns an ASCII domain as given, case included', () => {
    expect(toAsciiDomain('Mail.Example.com')).toBe('Mail.Example.com');
  });

  it('returns undefined for a domain IDNA cannot convert', () => {
    expect(toAsciiDomain('\u0301bücher.de')).toBeUndefined();
  });

  it('returns undefined for a domain without a top-level domain', () => {
    expect(toAsciiDomain('localhost')).toBeUndefined();
  });

  it('returns undefined for text a URL parser would cut short', () => {
    expect(toAsciiDomain('bücher.de/path')).toBeUndefined();
  });
});

describe('needsSmtpUtf8', () => {
  it('is true for a non-ASCII local part', () => {
    expect(needsSmtpUtf8('josé@example.com')).toBe(true);
  });

  it('is false for an ASCII local part at a punycode domain', () => {
    expect(needsSmtpUtf8('ana@xn--bcher-kva.de')).toBe(false);
  });

  it('is false for an ASCII local part at a Unicode domain, which punycode carries', () => {
    expect(needsSmtpUtf8('ana@bücher.de')).toBe(false);
  });

  it('looks only before the last @ of a quoted local part', () => {
    expect(needsSmtpUtf8('"é@x"@example.com')).toBe(true);
  });
});

describe('domainOf', () => {
  it('returns the lower-cased domain after the last @', () => {
    expect(domainOf('Ana@Mail.Example.COM')).toBe('mail.example.com');
  });

  it('returns an international domain in punycode', () => {
    expect(domainOf('ana@Bücher.de')).toBe('xn--bcher-kva.de');
  });
});

describe('sameAddress', () => {
  it('matches the Unicode and punycode spellings of one address', () => {
    expect(sameAddress('Ana@bücher.de', 'ana@xn--bcher-kva.de')).toBe(true);
  });

  it('does not match different local parts at one domain', () => {
    expect(sameAddress('ana@bücher.de', 'bob@xn--bcher-kva.de')).toBe(false);
  });
});

describe('identityCovers', () => {
  it('lets a domain identity cover an address at that domain, ignoring case', () => {
    expect(identityCovers('Example.com', 'ana@EXAMPLE.COM')).toBe(true);
  });

  it('does not let a domain identity cover a subdomain', () => {
    expect(identityCovers('example.com', 'ana@mail.example.com')).toBe(false);
  });

  it('does not let a domain identity cover a lookalike domain that ends with it', () => {
    expect(identityCovers('example.com', 'ana@evilexample.com')).toBe(false);
  });

  it('does not let a domain identity cover a domain that starts with it', () => {
    expect(identityCovers('example.com', 'ana@example.com.evil.org')).toBe(false);
  });

  it('lets an address identity cover that address, ignoring case', () => {
    expect(identityCovers('NoReply@Example.com', 'noreply@example.COM')).toBe(true);
  });

  it('does not let an address identity cover another address at the same domain', () => {
    expect(identityCovers('noreply@example.com', 'ceo@example.com')).toBe(false);
  });

  it('lets a Unicode domain identity cover an address at its punycode domain', () => {
    expect(identityCovers('bücher.de', 'ana@xn--bcher-kva.de')).toBe(true);
  });

  it('lets a punycode domain identity cover an address written with the Unicode domain', () => {
    expect(identityCovers('xn--bcher-kva.de', 'ana@bücher.de')).toBe(true);
  });

  it('lets a Unicode address identity cover the punycode address', () => {
    expect(identityCovers('ana@bücher.de', 'ana@xn--bcher-kva.de')).toBe(true);
  });
});
