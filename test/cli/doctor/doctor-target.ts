import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { DoctorTarget } from '../../../cli/doctor/target.ts';
import { createDnsLookup } from '../../../cli/doctor/target.ts';
import { createHttpTransport } from '../../../lambda/providers/http-transport.ts';
import { parseRelayConfig, type RelayConfigInput } from '../../../lib/config.ts';
import { UNREACHABLE_CLIENT_CONFIG } from '../../helpers/peers.ts';

/**
 * A doctor target for one check module's tests: the given configuration and settings, clients that
 * refuse every call unless the test passes real ones (its peers), 127.0.0.1:9 as the DNS server.
 */
export function doctorTarget(
  overrides: Partial<DoctorTarget> & { readonly configInput?: RelayConfigInput } = {},
): DoctorTarget {
  const { configInput, ...rest } = overrides;
  return {
    description: 'a test target',
    local: true,
    config: parseRelayConfig(configInput ?? { ses: { identities: ['example.com'] } }),
    settings: {},
    secrets: new SecretsManagerClient(UNREACHABLE_CLIENT_CONFIG),
    graphTransport: createHttpTransport(),
    dns: createDnsLookup(['127.0.0.1:9'], 500),
    timeoutMs: 5_000,
    ...rest,
  };
}
