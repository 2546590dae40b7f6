import type { z } from 'zod';

/** Configuration that cannot work. Lists every problem at once so one fix-and-retry cycle is enough. */
export class ConfigurationError extends Error {
  readonly problems: readonly string[];

  constructor(title: string, problems: readonly string[]) {
    super(`${title}:\n${problems.map((problem) => `  - ${problem}`).join('\n')}`);
    this.name = 'ConfigurationError';
    this.problems = problems;
  }
}

/** Renders a zod path the way a producer would write it in code: `to[2]`, `headers["X-Tenant"]`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let rendered = '';
  for (const segment of path) {
    if (typeof segment === 'number') rendered += `[${segment}]`;
    else if (typeof segment === 'string' && /^[A-Za-z_$][\w$]*$/.test(segment))
      rendered += rendered ? `.${segment}` : segment;
    else rendered += `[${JSON.stringify(String(segment))}]`;
  }
  return rendered || '(root)';
}

/** One line per problem, `field: why`, never echoing the offending value (it may be a body or a secret). */
export function describeIssues(error: z.ZodError): string[] {
  return error.issues.flatMap((issue) => describeIssue(issue, []));
}

function describeIssue(issue: z.core.$ZodIssue, prefix: readonly PropertyKey[]): string[] {
  const path = [...prefix, ...issue.path];
  switch (issue.code) {
    case 'unrecognized_keys':
      return issue.keys.map((key) => `${formatPath([...path, key])}: unknown field`);
    case 'invalid_key':
      return issue.issues.map((inner) => `${formatPath(path)}: ${inner.message}`);
    case 'invalid_type':
      return [
        `${formatPath(path)}: ${issue.message.endsWith('received undefined') ? 'required' : issue.message}`,
      ];
    case 'invalid_union': {
      if (issue.errors.every((branch) => branch.every(isMissing))) return [`${formatPath(path)}: required`];
      // Report the branch that accepted the value's type ("address is invalid"), not "Invalid input";
      // of two object forms, the one that knows the value's fields (smtp: one connection, or connections).
      const candidates = issue.errors.filter((branch) => !branch.every(isRootTypeMismatch));
      const relevant = candidates.find((branch) => !branch.some(isRootUnknownField)) ?? candidates[0];
      if (relevant) return relevant.flatMap((inner) => describeIssue(inner, path));
      return [`${formatPath(path)}: must be ${[...new Set(expectedTypes(issue))].join(' or ')}`];
    }
    default:
      return [`${formatPath(path)}: ${issue.message}`];
  }
}

function expectedTypes(issue: z.core.$ZodIssue): string[] {
  if (issue.code === 'invalid_type') return [issue.expected];
  if (issue.code === 'invalid_union') return issue.errors.flat().flatMap(expectedTypes);
  return [];
}

/** zod reports an absent required field as a type mismatch against `undefined`. */
function isMissing(issue: z.core.$ZodIssue): boolean {
  if (issue.path.length > 0) return false;
  if (issue.code === 'invalid_type') return issue.message.endsWith('received undefined');
  return issue.code === 'invalid_union' && issue.errors.every((branch) => branch.every(isMissing));
}

/** The value has fields this branch's object does not know: the value is in another form. */
function isRootUnknownField(issue: z.core.$ZodIssue): boolean {
  return issue.code === 'unrecognized_keys' && issue.path.length === 0;
}

/** The value's type was wrong for this branch (possibly a nested union rejecting it for every type). */
function isRootTypeMismatch(issue: z.core.$ZodIssue): boolean {
  if (issue.path.length > 0) return false;
  if (issue.code === 'invalid_type') return true;
  return issue.code === 'invalid_union' && issue.errors.every((branch) => branch.every(isRootTypeMismatch));
}
