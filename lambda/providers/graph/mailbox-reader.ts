import type { InboxEntry, MailboxReader } from '../../core/feedback/bounce-reports.ts';
import type { HttpResponse, HttpTransport } from '../http-transport.ts';
import { graphFault, networkFailure } from './graph-provider.ts';
import type { TokenSource } from './token-source.ts';

/** Graph returns at most this many messages per page of a list. */
const PAGE_SIZE = 100;

export interface GraphMailboxReaderOptions {
  /** https://graph.microsoft.com, or a national cloud's endpoint. */
  readonly graphEndpoint: string;
  /** Tokens of the app registration; reading needs the Mail.Read application permission. */
  readonly tokens: TokenSource;
  readonly transport: HttpTransport;
  readonly now?: () => number;
}

/**
 * Reads a mailbox's Inbox through Microsoft Graph (app-only, Mail.Read): lists messages by
 * receivedDateTime, oldest first, following @odata.nextLink, and fetches each one's MIME ($value).
 */
export class GraphMailboxReader implements MailboxReader {
  constructor(private readonly options: GraphMailboxReaderOptions) {}

  async listSince(mailbox: string, since: string, limit: number): Promise<InboxEntry[]> {
    // Spaces as %20, as Graph's documentation writes them (URLSearchParams would write +).
    const query = Object.entries({
      $filter: `receivedDateTime ge ${since}`,
      $orderby: 'receivedDateTime asc',
      $select: 'id,receivedDateTime',
      $top: String(Math.min(limit, PAGE_SIZE)),
    })
      .map(([name, value]) => `${name}=${encodeURIComponent(value)}`)
      .join('&');
    let url: string | undefined = `${this.mailboxUrl(mailbox)}/mailFolders/inbox/messages?${query}`;
    const entries: InboxEntry[] = [];
    while (url && entries.length < limit) {
      const page = JSON.parse((await this.get(url)).body.toString('utf8')) as {
        value?: { id?: unknown; receivedDateTime?: unknown }[];
        '@odata.nextLink'?: unknown;
      };
      for (const message of page.value ?? []) {
        if (typeof message.id === 'string' && typeof message.receivedDateTime === 'string') {
          entries.push({ id: message.id, receivedAt: message.receivedDateTime });
        }
      }
      url = typeof page['@odata.nextLink'] === 'string' ? page['@odata.nextLink'] : undefined;
    }
    return entries.slice(0, limit);
  }

  async content(mailbox: string, id: string): Promise<Buffer | undefined> {
    try {
      return (await this.get(`${this.mailboxUrl(mailbox)}/messages/${encodeURIComponent(id)}/$value`)).body;
    } catch (error) {
      // Deleted between the list and now: nothing to read, and no reason to stop at it.
      if ((error as { code?: unknown }).code === 'ErrorItemNotFound') return undefined;
      throw error;
    }
  }

  private mailboxUrl(mailbox: string): string {
    return `${this.options.graphEndpoint}/v1.0/users/${encodeURIComponent(mailbox)}`;
  }

  private async get(url: string): Promise<HttpResponse> {
    const token = await this.options.tokens.getToken();
    let response: HttpResponse;
    try {
      response = await this.options.transport({
        method: 'GET',
        url,
        headers: { authorization: `Bearer ${token}` },
      });
    } catch (error) {
      throw networkFailure(error);
    }
    if (response.status >= 200 && response.status < 300) return response;
    throw graphFault(response, (this.options.now ?? Date.now)());
  }
}
