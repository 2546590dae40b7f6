import { SES_MAX_MESSAGE_BYTES, SES_MAX_RECIPIENTS_PER_MESSAGE } from '../../core/limits.ts';
import { defineProvider, fieldOf } from '../provider-definition.ts';
import { sesConfigSchema } from './config.ts';
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
    ...section,
    ...(resources.sesConfigurationSetName !== undefined && {
      configurationSetName: resources.sesConfigurationSetName,
    }),
  }),
  settingsProblems: () => [],
  credentialSecrets: () => [],

  // SES authorises a send against the identity used and the configuration set: exactly those.
  sendPermissions: (section, resources) => [
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

  createProviders(settings, runtime) {
    const timeout = runtime.providerTimeoutMs;
    return [
      new SesProvider(createSesClient(timeout !== undefined ? { requestTimeoutMs: timeout } : {}), settings),
    ];
  },
});
