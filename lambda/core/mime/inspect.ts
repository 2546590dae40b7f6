import { type Mailbox, parseMailbox } from '../address.ts';
import { unsafeTextProblem } from '../unsafe-text.ts';
import { decodedParameter, decodeWords, flattenAddressTree, parseAddressTree } from './header-encoding.ts';
import { fieldValue, type Leaf, leavesOf } from './parts.ts';
import { headerValues, type RawMime } from './raw-mime.ts';

/** What a message says about itself, decoded, and what is wrong with it. */
export interface MimeSummary {
  readonly from: Mailbox[];
  readonly sender?: Mailbox;
  readonly replyTo: Mailbox[];
  readonly to: Mailbox[];
  readonly cc: Mailbox[];
  readonly bcc: Mailbox[];
  /** Decoded from encoded words. */
  readonly subject?: string;
  readonly messageId?: string;
  readonly date?: string;
  /** File names of the leaf parts that have one, decoded (RFC 2231 and RFC 2047). */
  readonly filenames: string[];
  /** Lowercase `type/subtype` of every leaf part, in document order. */
  readonly contentTypes: string[];
  /** One `field: why` line per problem; names the field or part, never echoes the text. */
  readonly problems: string[];
}

export function inspectMime(mime: RawMime): MimeSummary {
  const problems: string[] = [];
  const mailboxes = (name: string) => addressesOf(mime, name, problems);
  const from = mailboxes('from');
  if (from.length === 0 && !problems.some((problem) => problem.startsWith('from:'))) {
    problems.push('from: is missing');
  } else if (from.length > 1) {
    problems.push(`from: has ${from.length} addresses; the relay sends as exactly one`);
  }
  const sender = mailboxes('sender')[0];
  const replyTo = mailboxes('reply-to');
  const to = mailboxes('to');
  const cc = mailboxes('cc');
  const bcc = mailboxes('bcc');

  const rawSubject = headerValues(mime, 'subject')[0];
  const subject = rawSubject === undefined ? undefined : decodeWords(rawSubject);
  const subjectProblem = subject === undefined ? undefined : unsafeTextProblem(subject);
  if (subjectProblem) {
    problems.push(`subject: ${subjectProblem}`);
  }

  const messageId = headerValues(mime, 'message-id')[0];
  const date = headerValues(mime, 'date')[0];
  const leaves = leavesOf(mime);
  const filenames: string[] = [];
  for (const leaf of leaves) {
    const filename = filenameOf(leaf);
    if (filename === undefined) {
      continue;
    }
    filenames.push(filename);
    const problem = unsafeTextProblem(filename);
    if (problem) {
      problems.push(`filename of part ${leaf.path}: ${problem}`);
    }
  }

  return {
    from,
    ...(sender ? { sender } : {}),
    replyTo,
    to,
    cc,
    bcc,
    ...(subject === undefined ? {} : { subject }),
    ...(messageId === undefined ? {} : { messageId }),
    ...(date === undefined ? {} : { date }),
    filenames,
    contentTypes: leaves.map((leaf) => leaf.contentType.type),
    problems,
  };
}

/**
 * Every mailbox of every field of that name: addressparser splits the list and parseMailbox checks each
 * entry (address, IDN domain, unsafe characters in the display name). A group contributes its members,
 * so `undisclosed-recipients:;` contributes nothing.
 */
function addressesOf(mime: RawMime, name: string, problems: string[]): Mailbox[] {
  const entries = headerValues(mime, name).flatMap((value) => flattenAddressTree(parseAddressTree(value)));
  const mailboxes: Mailbox[] = [];
  entries.forEach((entry, index) => {
    if (entry.name === '' && entry.address === '') {
      return;
    }
    const position = `address ${index + 1}`;
    const quoted = entry.name
      ? `"${entry.name.replace(/["\\]/g, '\\$&')}" <${entry.address}>`
      : entry.address;
    const parsed = parseMailbox(quoted);
    if (!parsed.ok) {
      problems.push(`${name}: ${position} ${parsed.reason}`);
      return;
    }
    mailboxes.push(parsed.mailbox);
  });
  return mailboxes;
}

/** Content-Disposition filename, else Content-Type name. */
function filenameOf(leaf: Leaf): string | undefined {
  const disposition = fieldValue(leaf.headers, 'content-disposition');
  const type = fieldValue(leaf.headers, 'content-type');
  return (
    (disposition === undefined ? undefined : decodedParameter(disposition, 'filename')) ??
    (type === undefined ? undefined : decodedParameter(type, 'name'))
  );
}
