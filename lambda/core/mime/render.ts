import { type Mailbox, sameAddress } from '../address.ts';
import {
  type AddressNode,
  encodeUnstructured,
  formatAddressTree,
  formatMailbox,
  parseAddressTree,
} from './header-encoding.ts';
import {
  firstHeader,
  headerValues,
  type RawMime,
  serializeRawMime,
  withHeader,
  withoutHeaders,
} from './raw-mime.ts';

export interface RelayHeaders {
  /** Replaces From (and drops Sender); a non-ASCII display name is written as encoded words. */
  readonly from?: Mailbox;
  /** Set as Reply-To only when the message has none. */
  readonly replyTo?: readonly Mailbox[];
  /** Header fields the relay owns (trace headers such as X-Mail-Relay-Message-Id); replace any of that name. */
  readonly setHeaders?: Readonly<Record<string, string>>;
  /** Set as Message-ID only when the message has none; angle brackets are added when missing. */
  readonly messageId: string;
}

// What an address must not hold to go between angle brackets: whitespace, controls, brackets, list
// separators. A UTF-8 local part (SMTPUTF8) is fine; an IDN domain is already punycode in a Mailbox.
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused.
const UNWRITABLE_ADDRESS = /[\s\x00-\x1f\x7f<>,;"()\\]/;
const MESSAGE_ID = /^<[^\s<>]+>$/;

/** The submitted message with the headers the relay owns set. Throws on a value that would inject a header. */
export function prepareForRelay(mime: RawMime, options: RelayHeaders): RawMime {
  let result = mime;
  if (options.from) {
    // A Sender named the agent acting for the From that is replaced; Exchange would read it as
    // send-on-behalf, which the relay's mailbox has no right to.
    result = withHeader(withoutHeaders(result, 'Sender'), 'From', relayMailbox(options.from));
  }
  if (options.replyTo && options.replyTo.length > 0 && firstHeader(result, 'reply-to') === undefined) {
    result = withHeader(result, 'Reply-To', options.replyTo.map(relayMailbox).join(', '));
  }
  for (const [name, value] of Object.entries(options.setHeaders ?? {})) {
    if (/[\r\n]/.test(value)) {
      throw new Error(`the value for header ${name} must not contain CR or LF characters (header injection)`);
    }
    result = withHeader(result, name, encodeUnstructured(value));
  }
  if (firstHeader(result, 'message-id') === undefined) {
    result = withHeader(result, 'Message-ID', messageIdField(options.messageId));
  }
  return result;
}

/** The message for SES raw and SMTP, whose recipients travel in the envelope: Bcc never leaks. */
export function renderForEnvelope(mime: RawMime): Buffer {
  return serializeRawMime(withoutHeaders(mime, 'Bcc', 'Resent-Bcc'));
}

/**
 * The message for Microsoft Graph, which sends MIME to its header recipients: To and Cc keep only
 * `recipients` (a field left empty goes), and Bcc lists every other recipient (Exchange strips Bcc when
 * it sends), so the message goes to exactly `recipients`.
 */
export function renderWithRecipientHeaders(mime: RawMime, recipients: readonly Mailbox[]): Buffer {
  const isRecipient = (address: string) =>
    recipients.some((recipient) => sameAddress(recipient.address, address));
  const visible: string[] = [];
  let result = withoutHeaders(mime, 'Bcc', 'Resent-Bcc');
  for (const name of ['To', 'Cc']) {
    const values = headerValues(result, name);
    if (values.length === 0) {
      continue;
    }
    const tree = values.flatMap(parseAddressTree);
    const kept = keepRecipients(tree, isRecipient);
    visible.push(...addressesIn(kept));
    if (addressesIn(kept).length === addressesIn(tree).length && values.length === 1) {
      continue;
    }
    result =
      kept.length === 0 ? withoutHeaders(result, name) : withHeader(result, name, formatAddressTree(kept));
  }
  const hidden: Mailbox[] = [];
  for (const recipient of recipients) {
    const seen = [...visible, ...hidden.map((mailbox) => mailbox.address)];
    if (!seen.some((address) => sameAddress(address, recipient.address))) {
      hidden.push(recipient);
    }
  }
  if (hidden.length > 0) {
    result = withHeader(result, 'Bcc', hidden.map(relayMailbox).join(', '));
  }
  return serializeRawMime(result);
}

/** The nodes whose mailboxes are recipients; a group keeps its recipient members, an empty one stays. */
function keepRecipients(
  tree: readonly AddressNode[],
  isRecipient: (address: string) => boolean,
): AddressNode[] {
  return tree.flatMap((node): AddressNode[] => {
    if (node.kind === 'mailbox') {
      return isRecipient(node.address) ? [node] : [];
    }
    const members = node.members.filter((member) => isRecipient(member.address));
    return members.length > 0 || node.members.length === 0 ? [{ ...node, members }] : [];
  });
}

function addressesIn(tree: readonly AddressNode[]): string[] {
  return tree.flatMap((node) =>
    node.kind === 'mailbox' ? [node.address] : node.members.map((member) => member.address),
  );
}

function relayMailbox(mailbox: Mailbox): string {
  if (!mailbox.address.includes('@') || UNWRITABLE_ADDRESS.test(mailbox.address)) {
    throw new Error('a relay-owned address must be a plain address (no spaces, brackets or line breaks)');
  }
  return formatMailbox(mailbox);
}

function messageIdField(messageId: string): string {
  const trimmed = messageId.trim();
  const value = trimmed.startsWith('<') ? trimmed : `<${trimmed}>`;
  if (!MESSAGE_ID.test(value)) {
    throw new Error('messageId must be one id without spaces or line breaks, as in <id@example.com>');
  }
  return value;
}
