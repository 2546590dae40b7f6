import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ConfigurationError, describeIssues, formatPath } from '../../../lambda/core/validation.ts';

function issuesOf(schema: z.ZodType, value: unknown): string[] {
  const result = schema.safeParse(value);
  if (result.success) throw new Error('expected the value to be rejected');
  return describeIssues(result.error);
}

describe('formatPath', () => {
  it('renders an empty path as (root)', () => {
    expect(formatPath([])).toBe('(root)');
  });

  it('renders a single identifier as is', () => {
    expect(formatPath(['subject'])).toBe('subject');
  });

  it('renders nested identifiers with dots', () => {
    expect(formatPath(['limits', 'maxRecipients'])).toBe('limits.maxRecipients');
  });

  it('renders numbers as indexes', () => {
    expect(formatPath(['to', 2, 'address'])).toBe('to[2].address');
  });

  it('renders a leading index without a dot before the next key', () => {
    expect(formatPath([0, 'name'])).toBe('[0].name');
  });

  it('renders keys that are not identifiers as quoted brackets', () => {
    expect(formatPath(['headers', 'X-Tenant'])).toBe('headers["X-Tenant"]');
  });

  it('escapes quotes in bracketed keys', () => {
    expect(formatPath(['tags', 'a "b"'])).toBe('tags["a \\"b\\""]');
  });

  it('renders a symbol key by its description in brackets', () => {
    expect(formatPath([Symbol('secret')])).toBe('["Symbol(secret)"]');
  });
});

describe('describeIssues', () => {
  it('renders one line per issue as field: message', () => {
    const schema = z.object({ a: z.string().min(2, 'too short'), b: z.number().max(1, 'too big') });
    expect(issuesOf(schema, { a: 'x', b: 5 })).toEqual(['a: too short', 'b: too big']);
  });

  it('reports each unknown key of a strict object on its own line', () => {
    expect(issuesOf(z.strictObject({ a: z.string() }), { a: 'ok', b: 1, 'c-d': 2 })).toEqual([
      'b: unknown field',
      '["c-d"]: unknown field',
    ]);
  });

  it('reports an invalid record key with the key in the path', () => {
    const schema = z.object({ headers: z.record(z.string().regex(/^X-/, 'must start with X-'), z.string()) });
    expect(issuesOf(schema, { headers: { Subject: 'x' } })).toEqual(['headers.Subject: must start with X-']);
  });

  it('reports the union branch that accepted the type, not a generic invalid input', () => {
    const schema = z.object({
      to: z.union([z.email('not an email'), z.array(z.email('not an email'))]),
    });
    expect(issuesOf(schema, { to: ['a@example.com', 'nope'] })).toEqual(['to[1]: not an email']);
  });

  it('lists the expected types when no union branch accepts the type', () => {
    const schema = z.object({ to: z.union([z.string(), z.array(z.string())]) });
    expect(issuesOf(schema, { to: 42 })).toEqual(['to: must be string or array']);
  });

  it('lists expected types once, flattening nested unions', () => {
    const schema = z.union([z.union([z.string(), z.number()]), z.string()]);
    expect(issuesOf(schema, true)).toEqual(['(root): must be string or number']);
  });

  it('does not echo the rejected value', () => {
    const secret = 'hunter2-very-secret';
    const problems = issuesOf(z.object({ password: z.string().min(50) }), { password: secret });
    expect(problems.join('\n')).not.toContain(secret);
  });
});

describe('ConfigurationError', () => {
  it('lists every problem under the title in its message', () => {
    const error = new ConfigurationError('Invalid settings', ['a: missing', 'b: too big']);
    expect(error.message).toBe('Invalid settings:\n  - a: missing\n  - b: too big');
  });

  it('keeps the problems and names itself', () => {
    const error = new ConfigurationError('Invalid settings', ['a: missing']);
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('ConfigurationError');
    expect(error.problems).toEqual(['a: missing']);
  });
});
