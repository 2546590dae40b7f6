import { GetAccountCommand } from '@aws-sdk/client-sesv2';
import { SES_MAX_MESSAGE_BYTES, SES_MAX_RECIPIENTS_PER_MESSAGE } from '../../core/limits.ts';
import { type PacingConfig, resolvePacing } from '../../core/pacing/limits.ts';
import { defineProvider, fieldOf } from '../provider-definition.ts';
import { sesConfigSchema, sesSettingsFor } from './config.ts';
import { SES_FAILURES } from './failures.ts';
import { createSesClient, SES_PROVIDER, SesProvider } from './ses-provider.ts';
import { sesSettingsSchema } from './settings.ts';

/** Amazon SES v2: sends as verified identities, and is the usual last provider of a chain. */
export const sesDefinition = defineProvider({
  section: 'ses',
  title: 'Amazon SES',
  namePattern: SES_PROVIDER,
  nameHint: SES_PROVIDER,
  limits: { maxRecipients: SES_MAX_RECIPIENTS_PER_MESSAGE, maxMessageBytes: SES_MAX_MESSAGE_BYTES },
  configSchema: sesConfigSchema,
  description:
    'Amazon SES: the verified identities the relay may send from. At least one provider section (graph, smtp, ses) is required.',
  settingsSchema: sesSettingsSchema,
  failures: SES_FAILURES,

  whyNotConfigured: (name) =>
    `"${name}" is not configured: add an ses section (with its credentials) or remove it from the chain`,
  providersIn: (section) =>
    section === undefined
      ? []
      : [
          {
            name: SES_PROVIDER,
            path: ['ses'],
            sendersField: 'identities',
            senders: fieldOf(section, 'identities'),
          },
        ],
  configProblems: () => [],

  // Every SES send uses the relay's configuration set, so its events reach the feedback function.
  settingsFor: (section, resources) => ({
    ...sesSettingsFor(section),
    ...(resources.sesConfigurationSetName !== undefined && {
      configurationSetName: resources.sesConfigurationSetName,
    }),
  }),
  settingsProblems: () => [],
  credentialSecrets: () => [],

  // SES authorises a send against the identity used and the configuration set: exactly those.
  sendPermissions: (section, resources) => [
    // The account's send rate, read at cold start to pace to it (GetAccount has no resource ARN).
    ...(readsAccountRate(section.pacing)
      ? [{ service: 'ses', actions: ['ses:GetAccount'], resources: ['*'] }]
      : []),
    {
      service: 'ses',
      actions: ['ses:SendEmail', 'ses:SendRawEmail'],
      resources: [
        ...section.identities.map((identity) => `identity/${identity}`),
        ...(resources.sesConfigurationSetName !== undefined
          ? [`configuration-set/${resources.sesConfigurationSetName}`]
          : []),
      ],
    },
  ],
  egressPorts: () => [443],
  sendersOf: (settings) => [{ provider: SES_PROVIDER, senders: settings.identities }],
  pacingOf: (settings) => [{ provider: SES_PROVIDER, pacing: resolvePacing({}, settings.pacing) }],

  // The account's maximum send rate (recipients per second), unless the configuration set a rate.
  async readPacing(settings, runtime) {
    if (!readsAccountRate(settings.pacing)) return [];
    const configured = resolvePacing({}, settings.pacing);
    const timeout = runtime.providerTimeoutMs;
    const client = createSesClient(timeout !== undefined ? { requestTimeoutMs: timeout } : {});
    const account = await client.send(new GetAccountCommand({}));
    const rate = account.SendQuota?.MaxSendRate;
    if (rate === undefined || rate <= 0) return [];
    const pacing = configured;
    return [
      {
        provider: SES_PROVIDER,
        pacing: { ...pacing, perProvider: { ...pacing?.perProvider, recipientsPerSecond: rate } },
      },
    ];
  },

  createProviders(settings, runtime) {
    const timeout = runtime.providerTimeoutMs;
    return [
      new SesProvider(createSesClient(timeout !== undefined ? { requestTimeoutMs: timeout } : {}), settings),
    ];
  },
});

/** Whether SES sends are paced to the account's own rate (read at cold start): unless off or set. */
function readsAccountRate(pacing: PacingConfig | undefined): boolean {
  return pacing !== false && pacing?.perProvider?.recipientsPerSecond === undefined;
}
