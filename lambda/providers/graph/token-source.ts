import {
  ConfidentialClientApplication,
  type INetworkModule,
  LogLevel,
  type NetworkRequestOptions,
  type NetworkResponse,
} from '@azure/msal-node';
import { type FailureClass, RelayFailure } from '../../core/failures.ts';
import { truncate } from '../../core/text.ts';
import { type HttpTransport, TransportError } from '../http-transport.ts';
import { type CredentialSource, GRAPH_PROVIDER, type GraphCredential } from './credentials.ts';
import { GRAPH_FAILURES } from './failures.ts';
import type { GraphSettings } from './settings.ts';

/** Hands out Graph access tokens: one token request per token lifetime, however many messages. */
export interface TokenSource {
  getToken(): Promise<string>;
}

type Endpoints = Pick<GraphSettings, 'tenantId' | 'clientId' | 'authorityHost' | 'graphEndpoint'>;

/**
 * MSAL client credentials flow. The authority metadata is given rather than discovered, so a cold
 * start makes exactly one request (the token POST) and no request leaves for an unexpected host.
 */
/** A token is used until this long before it expires, then a new one is asked for. */
const REFRESH_BEFORE_EXPIRY_MS = 5 * 60_000;

export class MsalTokenSource implements TokenSource {
  private client: ConfidentialClientApplication | undefined;
  private pending: Promise<string> | undefined;
  /** The token in hand: handed out without asking MSAL (whose cache lookup costs CPU per request). */
  private current: { readonly token: string; readonly refreshAt: number } | undefined;
  /** MSAL reports a failed connection as `network_error` without its cause: the transport keeps it here. */
  private readonly witness: TransportWitness = {};

  /** @param scope what the token is for; Graph by default (`<graphEndpoint>/.default`). */
  constructor(
    private readonly settings: Endpoints,
    private readonly credential: CredentialSource,
    private readonly transport: HttpTransport,
    private readonly scope = `${settings.graphEndpoint}/.default`,
  ) {}

  /** The token in hand while it is fresh; else one request, which concurrent callers share. */
  getToken(): Promise<string> {
    if (this.current && Date.now() < this.current.refreshAt) return Promise.resolve(this.current.token);
    this.pending ??= this.acquire().finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  private async acquire(): Promise<string> {
    const credential = await this.credential.get();
    try {
      this.client ??= createClient(this.settings, credential, this.transport, this.witness);
      this.witness.last = undefined;
      const result = await this.client.acquireTokenByClientCredential({
        scopes: [this.scope],
      });
      if (!result?.accessToken) throw new Error('Entra ID returned no access token');
      const expiresAt = result.expiresOn?.getTime();
      this.current =
        expiresAt === undefined
          ? undefined
          : { token: result.accessToken, refreshAt: expiresAt - REFRESH_BEFORE_EXPIRY_MS };
      return result.accessToken;
    } catch (error) {
      const failure = tokenFailure(error, this.witness.last);
      if (failure.failureClass === 'provider') {
        // Entra ID refused the credential: read the secret again next time, in case it was rotated.
        this.client = undefined;
        this.current = undefined;
        this.credential.invalidate();
      }
      throw failure;
    }
  }
}

function createClient(
  settings: Endpoints,
  credential: GraphCredential,
  transport: HttpTransport,
  witness: TransportWitness,
): ConfidentialClientApplication {
  const authority = `${settings.authorityHost}/${settings.tenantId}`;
  const host = new URL(settings.authorityHost).host;
  return new ConfidentialClientApplication({
    auth: {
      clientId: settings.clientId,
      authority,
      ...(credential.kind === 'certificate'
        ? {
            clientCertificate: {
              thumbprintSha256: credential.thumbprintSha256,
              privateKey: credential.privateKey,
            },
          }
        : { clientSecret: credential.clientSecret }),
      authorityMetadata: JSON.stringify({
        token_endpoint: `${authority}/oauth2/v2.0/token`,
        issuer: `${authority}/v2.0`,
        authorization_endpoint: `${authority}/oauth2/v2.0/authorize`,
        end_session_endpoint: `${authority}/oauth2/v2.0/logout`,
        jwks_uri: `${authority}/discovery/v2.0/keys`,
        response_types_supported: ['code', 'id_token', 'code id_token', 'id_token token'],
      }),
      cloudDiscoveryMetadata: JSON.stringify({
        tenant_discovery_endpoint: `${authority}/v2.0/.well-known/openid-configuration`,
        'api-version': '1.1',
        metadata: [{ preferred_network: host, preferred_cache: host, aliases: [host] }],
      }),
    },
    system: {
      networkClient: msalNetworkClient(transport, witness),
      // MSAL logs only warnings and errors, and never personal data.
      loggerOptions: { logLevel: LogLevel.Warning, piiLoggingEnabled: false, loggerCallback: () => {} },
    },
  });
}

/** The last transport failure of a token request (MSAL rethrows it as a bare `network_error`). */
interface TransportWitness {
  last?: TransportError;
}

function msalNetworkClient(transport: HttpTransport, witness: TransportWitness): INetworkModule {
  const send = async <T>(
    method: 'GET' | 'POST',
    url: string,
    options?: NetworkRequestOptions,
  ): Promise<NetworkResponse<T>> => {
    const response = await transport({
      method,
      url,
      ...(options?.headers && { headers: options.headers }),
      ...(options?.body !== undefined && { body: options.body }),
    }).catch((error: unknown) => {
      if (error instanceof TransportError) witness.last = error;
      throw error;
    });
    const text = response.body.toString('utf8');
    let body: unknown = {};
    try {
      body = text ? JSON.parse(text) : {};
    } catch {
      body = { error: 'invalid_response', error_description: truncate(text, 200) };
    }
    return { status: response.status, headers: { ...response.headers }, body: body as T };
  };
  return {
    sendGetRequestAsync: (url, options) => send('GET', url, options),
    sendPostRequestAsync: (url, options) => send('POST', url, options),
  };
}

const AADSTS = /AADSTS(\d+)/;

/**
 * Entra ID refusals become provider-level failures carrying the AADSTS code (the table has hints
 * for the common ones); network trouble and 5xx/429 from the token endpoint are transient.
 */
function tokenFailure(error: unknown, seenByTransport?: TransportError): RelayFailure {
  if (error instanceof RelayFailure) return error;
  const transportError = findTransportError(error) ?? seenByTransport;
  if (transportError) {
    return GRAPH_FAILURES.classify(
      {
        provider: GRAPH_PROVIDER,
        code: transportError.code,
        message: `token request failed: ${transportError.message}`,
        fallbackClass: 'transient',
      },
      error,
    );
  }
  const details = (error ?? {}) as {
    errorCode?: string;
    errorMessage?: string;
    status?: number;
    message?: string;
  };
  const text = details.errorMessage || details.message || String(error);
  const aadsts = AADSTS.exec(text);
  const status = details.status;
  const fallbackClass: FailureClass =
    status !== undefined && (status === 429 || status >= 500) ? 'transient' : 'provider';
  return GRAPH_FAILURES.classify(
    {
      provider: GRAPH_PROVIDER,
      code: aadsts ? `AADSTS${aadsts[1]}` : details.errorCode || 'TokenRequestFailed',
      // The first line of Entra's description says what is wrong; the rest is trace and correlation ids.
      message: `Entra ID refused the token request: ${truncate(text.split(/\r?\n/)[0] ?? text, 400)}`,
      fallbackClass,
      ...(status !== undefined && { status }),
    },
    error,
  );
}

function findTransportError(error: unknown, depth = 0): TransportError | undefined {
  if (error instanceof TransportError) return error;
  if (depth > 4 || typeof error !== 'object' || error === null) return undefined;
  const nested = error as { cause?: unknown; error?: unknown };
  return findTransportError(nested.cause, depth + 1) ?? findTransportError(nested.error, depth + 1);
}
