import * as z from 'zod';
import { isDomainName, isEmailAddress } from '../../core/address.ts';
import { pacingConfigSchema } from '../../core/pacing/limits.ts';

/** Microsoft clouds: where tokens come from and where Graph lives (learn.microsoft.com/graph/deployments). */
export const GRAPH_CLOUDS = {
  global: {
    authorityHost: 'https://login.microsoftonline.com',
    graphEndpoint: 'https://graph.microsoft.com',
  },
  usgov: { authorityHost: 'https://login.microsoftonline.us', graphEndpoint: 'https://graph.microsoft.us' },
  'usgov-dod': {
    authorityHost: 'https://login.microsoftonline.us',
    graphEndpoint: 'https://dod-graph.microsoft.us',
  },
  china: {
    authorityHost: 'https://login.chinacloudapi.cn',
    graphEndpoint: 'https://microsoftgraph.chinacloudapi.cn',
  },
} as const;
export type GraphCloud = keyof typeof GRAPH_CLOUDS;

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const graphTenantIdSchema = z.string().refine((value) => GUID.test(value) || isDomainName(value), {
  message: 'must be the directory (tenant) id, a GUID, or a verified domain such as contoso.onmicrosoft.com',
});

export const graphClientIdSchema = z
  .string()
  .regex(GUID, 'must be the application (client) id of the app registration, a GUID');

export const graphSendersSchema = z
  .array(
    z.string().refine((value) => isDomainName(value) || isEmailAddress(value), {
      message: 'must be a domain (contoso.com: every mailbox there) or one mailbox address',
    }),
  )
  .min(1, 'list at least one mailbox or domain that sends through Graph');

/** An https base URL without a path, such as https://graph.microsoft.com. */
export const httpsOriginSchema = z
  .url({ protocol: /^https$/, error: 'must be an https URL' })
  .refine((value) => new URL(value).pathname === '/' && !value.endsWith('/'), {
    message: 'must be just scheme and host (https://host[:port]), without a path or trailing slash',
  });

export const graphSettingsSchema = z.strictObject({
  tenantId: graphTenantIdSchema,
  clientId: graphClientIdSchema,
  senders: graphSendersSchema,
  /** Secrets Manager secret (ARN or name) with the app credential: see providers/graph/credentials.ts. */
  credentialSecretId: z.string().min(1),
  saveToSentItems: z.boolean(),
  /**
   * After a lost answer, how long the relay keeps looking for the message's sent copy in the mailbox
   * (Mail.ReadBasic.All) before it concludes the message was not sent. Absent or 0: it does not look.
   */
  sentItemsLookupSeconds: z.int().min(0).max(3600).optional(),
  authorityHost: httpsOriginSchema,
  graphEndpoint: httpsOriginSchema,
  /** What the configuration changes of the default pacing limits (false: not paced); absent: the defaults. */
  pacing: pacingConfigSchema.optional(),
});
export type GraphSettings = z.infer<typeof graphSettingsSchema>;
