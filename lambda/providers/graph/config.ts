import * as z from 'zod';
import { type ProviderPacing, pacingConfigSchema } from '../../core/pacing/limits.ts';
import { SECRET_ARN_MESSAGE, SECRET_ARN_PATTERN } from '../../core/secret-arn.ts';
import {
  GRAPH_CLOUDS,
  type GraphCloud,
  type GraphSettings,
  graphClientIdSchema,
  graphSendersSchema,
  graphTenantIdSchema,
  httpsOriginSchema,
} from './settings.ts';

/** How the app is granted its mailboxes: Entra admin consent, or Exchange RBAC for Applications. */
export const GRAPH_MAILBOX_ACCESS = ['consent', 'rbac'] as const;

const GRAPH_CLOUD_NAMES = Object.keys(GRAPH_CLOUDS) as [GraphCloud, ...GraphCloud[]];

export const graphConfigSchema = z.strictObject({
  tenantId: graphTenantIdSchema.describe(
    'Directory (tenant) ID of the Microsoft 365 tenant (Entra admin center > App registrations > the app > Overview), or a verified domain of the tenant such as contoso.onmicrosoft.com.',
  ),
  clientId: graphClientIdSchema.describe(
    'Application (client) ID of the app registration that holds the Mail.Send application permission.',
  ),
  senders: graphSendersSchema.describe(
    'From addresses the relay sends through Microsoft Graph: one mailbox (soporte@contoso.com) or a whole domain (contoso.com: every mailbox at exactly that domain). Each From must be an Exchange Online mailbox (user or shared) the app may send as. Senders listed here win over ses.identities.',
  ),
  credentialSecretArn: z
    .string()
    .regex(SECRET_ARN_PATTERN, SECRET_ARN_MESSAGE)
    .optional()
    .describe(
      'Complete ARN (with the 6-character suffix, ...:secret:name-AbCdEf) of an existing Secrets Manager secret in the stack\'s region that holds the app credential as a JSON string: {"clientSecret": "..."} or {"certificate": "-----BEGIN CERTIFICATE-----...", "privateKey": "-----BEGIN PRIVATE KEY-----..."}. The function may read only this secret. Leave it out to have the stack create an empty secret (stack output GraphCredentialSecretArn) and put the credential in it after deploying.',
    ),
  saveToSentItems: z
    .boolean()
    .default(true)
    .describe(
      "Keep a copy of each message in the sending mailbox's Sent Items. Messages with more than 3 MB of attachments are sent as drafts, which Graph always saves.",
    ),
  sentItemsLookupSeconds: z
    .int()
    .min(0)
    .max(3600)
    .optional()
    .describe(
      "After a lost sendMail answer (a timeout or a reset after the request went out), how long the relay keeps looking for the message's copy in the sending mailbox, by the Message-ID it gave the message, before it concludes the message was not sent. Needs the Mail.ReadBasic.All application permission (or Mail.Read) and saveToSentItems. 0 turns the lookups off: such a message then follows its route's onUnknownOutcome. Default 300 with saveToSentItems, else 0.",
    ),
  mailboxAccess: z
    .enum(GRAPH_MAILBOX_ACCESS)
    .default('consent')
    .describe(
      'How the app may send as the senders. consent: the Mail.Send application permission with admin consent (its tokens carry the Mail.Send role). rbac: Exchange Online RBAC for Applications scoped to the sending mailboxes, with the tenant-wide consent removed (its tokens carry no Mail.Send role; Exchange checks the scope). The relay sends the same way; mail-relay doctor checks the token accordingly.',
    ),
  cloud: z
    .enum(GRAPH_CLOUD_NAMES)
    .default('global')
    .describe(
      'The Microsoft cloud the tenant lives in: global (worldwide Microsoft 365 and GCC), usgov (GCC High), usgov-dod (DoD) or china (operated by 21Vianet). Picks the token authority and the Graph endpoint.',
    ),
  authorityHost: httpsOriginSchema
    .optional()
    .describe(
      "Overrides the cloud's Entra ID token authority, scheme and host only (https://login.microsoftonline.us).",
    ),
  graphEndpoint: httpsOriginSchema
    .optional()
    .describe(
      "Overrides the cloud's Microsoft Graph endpoint, scheme and host only (https://graph.microsoft.us).",
    ),
  pacing: pacingConfigSchema
    .optional()
    .describe(
      'The limits the relay keeps Graph sends within, across every send function at once (docs/pacing.md). Default per mailbox: 30 messages per minute and 10,000 recipients per day (Exchange Online); Graph 4 concurrent requests per mailbox only with perMailbox.concurrentRequests (each function keeps 4 itself; the fleet-wide lease costs two table writes per message). Each field given replaces its default; "mailboxes" sets limits of single mailboxes; false turns pacing off.',
    ),
});
export type GraphConfig = z.output<typeof graphConfigSchema>;

/** Exchange files the sent copy within seconds; five minutes leaves a wide margin before "not sent". */
const DEFAULT_SENT_ITEMS_LOOKUP_SECONDS = 300;

/** The settings the send function gets for a `graph` section, its cloud resolved to the two hosts. */
export function graphSettingsFor(graph: GraphConfig, credentialSecretId: string): GraphSettings {
  const cloud = GRAPH_CLOUDS[graph.cloud];
  return {
    tenantId: graph.tenantId,
    clientId: graph.clientId,
    senders: graph.senders,
    credentialSecretId,
    saveToSentItems: graph.saveToSentItems,
    sentItemsLookupSeconds:
      graph.sentItemsLookupSeconds ?? (graph.saveToSentItems ? DEFAULT_SENT_ITEMS_LOOKUP_SECONDS : 0),
    authorityHost: graph.authorityHost ?? cloud.authorityHost,
    graphEndpoint: graph.graphEndpoint ?? cloud.graphEndpoint,
    ...(graph.pacing !== undefined && { pacing: graph.pacing }),
  };
}

/**
 * Exchange Online's published limits per mailbox: 30 messages per minute and 10,000 recipients per
 * day (learn.microsoft.com/office365/servicedescriptions/exchange-online-service-description/exchange-online-limits).
 * Graph's 4 concurrent requests per app per mailbox (learn.microsoft.com/graph/throttling-limits) are
 * not paced across the fleet by default: at 30 messages a minute a mailbox has one send in flight
 * unless sends take seconds, each function keeps its own 4 (mailbox-limiter.ts), and a 429
 * MailboxConcurrency is retried. A fleet-wide lease costs two pacing-table writes per message;
 * `perMailbox.concurrentRequests` turns it on.
 */
export const GRAPH_PACING_DEFAULTS: ProviderPacing = {
  perMailbox: { messagesPerMinute: 30, recipientsPerDay: 10_000 },
};
