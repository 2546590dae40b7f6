import { EXCHANGE_MAX_RECIPIENTS_PER_MESSAGE, GRAPH_MAX_MESSAGE_BYTES } from '../../core/limits.ts';
import { resolvePacing } from '../../core/pacing/limits.ts';
import { createHttpTransport } from '../http-transport.ts';
import { defineProvider, fieldOf, type ProviderRuntime } from '../provider-definition.ts';
import { GRAPH_PACING_DEFAULTS, graphConfigSchema, graphSettingsFor } from './config.ts';
import { cachedCredential, GRAPH_PROVIDER, graphSecretReader } from './credentials.ts';
import { GRAPH_FAILURES } from './failures.ts';
import { GraphProvider } from './graph-provider.ts';
import { type GraphSettings, graphSettingsSchema } from './settings.ts';
import { MsalTokenSource } from './token-source.ts';

/**
 * What the secret the stack creates holds until the admin puts the credential in. The send function
 * recognises the `placeholder` key and reports GraphCredentialNotSet instead of a parse error.
 *
 * Never change this text: it is the secret's value in the template, so CloudFormation would write
 * the new text over the credential the admin put in, on the next deployment of every relay.
 */
export const GRAPH_CREDENTIAL_PLACEHOLDER = {
  placeholder:
    'Replace this value with {"clientSecret": "..."} or {"certificate": "-----BEGIN CERTIFICATE-----...", "privateKey": "-----BEGIN PRIVATE KEY-----..."}; see the README, Microsoft Graph setup',
};

/** Microsoft Graph, app-only: sends as Exchange Online mailboxes through `sendMail`. */
export const graphDefinition = defineProvider({
  section: 'graph',
  title: 'Microsoft Graph',
  namePattern: GRAPH_PROVIDER,
  nameHint: GRAPH_PROVIDER,
  limits: {
    maxRecipients: EXCHANGE_MAX_RECIPIENTS_PER_MESSAGE,
    maxMessageBytes: GRAPH_MAX_MESSAGE_BYTES,
  },
  configSchema: graphConfigSchema,
  description:
    'Microsoft Graph, app-only: send as Exchange Online mailboxes of one Microsoft 365 tenant through an app registration with the Mail.Send application permission (docs/microsoft-graph.md). At least one provider section (graph, smtp, ses) is required.',
  settingsSchema: graphSettingsSchema,
  failures: GRAPH_FAILURES,

  whyNotConfigured: (name) =>
    `"${name}" is not configured: add a graph section (with its credentials) or remove it from the chain`,
  providersIn: (section) =>
    section === undefined
      ? []
      : [
          {
            name: GRAPH_PROVIDER,
            path: ['graph'],
            sendersField: 'senders',
            senders: fieldOf(section, 'senders'),
          },
        ],

  configProblems(section) {
    const lookupSeconds = fieldOf(section, 'sentItemsLookupSeconds');
    if (
      typeof lookupSeconds === 'number' &&
      lookupSeconds > 0 &&
      fieldOf(section, 'saveToSentItems') === false
    ) {
      return [
        {
          path: ['graph', 'sentItemsLookupSeconds'],
          message:
            'looks for the copy Graph saves in Sent Items, and graph.saveToSentItems is false: turn saveToSentItems on, or set this to 0',
        },
      ];
    }
    return [];
  },

  settingsFor(section, resources) {
    const credentialSecretId = resources.credentialSecretIds.get(GRAPH_PROVIDER);
    if (credentialSecretId === undefined) {
      throw new Error('graph: the stack must create or import the credential secret before the settings');
    }
    return graphSettingsFor(section, credentialSecretId);
  },

  settingsProblems: () => [],

  credentialSecrets: (section) => [
    {
      provider: GRAPH_PROVIDER,
      constructId: 'GraphCredential',
      path: ['graph', 'credentialSecretArn'],
      ...(section.credentialSecretArn !== undefined && { arn: section.credentialSecretArn }),
      placeholder: {
        description:
          'Microsoft Graph app credential for the mail relay, JSON: {"clientSecret": "..."} or ' +
          '{"certificate": "<PEM>", "privateKey": "<PEM>"}. Created with a placeholder; put the real value in after deploying.',
        value: GRAPH_CREDENTIAL_PLACEHOLDER,
      },
    },
  ],

  // Graph is HTTPS only; its token comes from Entra ID, also over HTTPS.
  sendPermissions: () => [],
  egressPorts: () => [443],
  sendersOf: (settings) => [{ provider: GRAPH_PROVIDER, senders: settings.senders }],
  pacingOf: (settings) => [
    { provider: GRAPH_PROVIDER, pacing: resolvePacing(GRAPH_PACING_DEFAULTS, settings.pacing) },
  ],

  createProviders(settings, runtime) {
    return [graphAppFor(settings, runtime).provider];
  },
});

/**
 * Graph's adapter with the app credential and transport it uses, made once per send function: SMTP's
 * XOAUTH2 borrows the same credential (one secret read) and transport for its tokens.
 */
export function graphAppFor(settings: GraphSettings, runtime: ProviderRuntime) {
  return runtime.shared(GRAPH_PROVIDER, () => {
    const transport = runtime.graphTransport ?? createHttpTransport();
    // The credential is read from Secrets Manager on first use, once per cold start.
    const credential = cachedCredential(graphSecretReader(runtime.secrets), settings.credentialSecretId);
    const provider = new GraphProvider({
      settings,
      tokens: new MsalTokenSource(settings, credential, transport),
      transport,
    });
    return { settings, provider, credential, transport };
  });
}
