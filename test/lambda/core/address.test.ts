import { describe, expect, it } from 'vitest';
import {
  domainOf,
  identityCovers,
  isDomainName,
  isEmailAddress,
  parseMailbox,
} from '../../../lambda/core/address.ts';

const INVALID_ADDRESS = 'is not a valid email address (expected "a@example.com" or "Name <a@example.com>")';
const BAD_NAME = 'has a display name with unbalanced quotes or angle brackets';

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

describe('isEmailAddress', () => {
  it.each([
    'a@example.com',
    'first.last+tag@sub.example.co.uk',
    "o'brien@example.org",
    'x@xn--bcher-kva.example',
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
    ['non-ASCII characters', 'ñ@example.com'],
    ['spaces', 'a b@example.com'],
  ])('rejects an address with %s', (_reason, address) => {
    expect(isEmailAddress(address)).toBe(false);
  });

  it('accepts an address of exactly 254 characters and rejects one of 255', () => {
    const domain = `${'a'.repeat(61)}.${'b'.repeat(61)}.${'c'.repeat(61)}.${'d'.repeat(61)}.com`;
    const longest = `ab@${domain}`;
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
});

describe('domainOf', () => {
  it('returns the lower-cased domain after the last @', () => {
    expect(domainOf('Ana@Mail.Example.COM')).toBe('mail.example.com');
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
});
