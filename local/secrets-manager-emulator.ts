import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { LOOPBACK, type RunningEmulator } from './emulators.ts';

const REGION = 'us-east-1';
const ACCOUNT = '000000000000';

export interface SecretsManagerEmulator extends RunningEmulator {
  /** Creates or replaces a secret; returns its ARN (what the relay's settings name). */
  putSecret(name: string, value: string): string;
  /** GetSecretValue calls served, by secret name: how often the relay read its credential. */
  readonly reads: ReadonlyMap<string, number>;
}

/**
 * The part of AWS Secrets Manager the relay uses (GetSecretValue, JSON 1.1 protocol), in memory on
 * 127.0.0.1, so the send function reads its Graph credential locally exactly as it does in AWS.
 */
export async function startSecretsManagerEmulator(port: number): Promise<SecretsManagerEmulator> {
  const secrets = new Map<string, { arn: string; value: string; versionId: string; created: number }>();
  const reads = new Map<string, number>();
  const arnOf = (name: string) => `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:${name}-AbCdEf`;
  const find = (id: string) =>
    [...secrets.entries()].find(
      ([name, secret]) => name === id || secret.arn === id || arnOf(name).startsWith(id),
    );

  const server = createServer((request, response) => {
    void handle(request, response).catch(() =>
      reply(response, 500, 'InternalServiceError', 'emulator error'),
    );
  });

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const target = String(request.headers['x-amz-target'] ?? '');
    if (request.method !== 'POST' || target !== 'secretsmanager.GetSecretValue') {
      return reply(
        response,
        400,
        'UnknownOperationException',
        `the local emulator serves GetSecretValue only (${target})`,
      );
    }
    let input: { SecretId?: unknown };
    try {
      input = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { SecretId?: unknown };
    } catch {
      return reply(response, 400, 'SerializationException', 'request body is not JSON');
    }
    const found = typeof input.SecretId === 'string' ? find(input.SecretId) : undefined;
    if (!found) {
      return reply(
        response,
        400,
        'ResourceNotFoundException',
        "Secrets Manager can't find the specified secret.",
      );
    }
    const [name, secret] = found;
    reads.set(name, (reads.get(name) ?? 0) + 1);
    response.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' });
    response.end(
      JSON.stringify({
        ARN: secret.arn,
        Name: name,
        SecretString: secret.value,
        VersionId: secret.versionId,
        VersionStages: ['AWSCURRENT'],
        CreatedDate: secret.created / 1000,
      }),
    );
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, LOOPBACK, () => resolve());
  });
  const bound = (server.address() as AddressInfo).port;
  return {
    endpoint: `http://${LOOPBACK}:${bound}`,
    port: bound,
    reads,
    putSecret(name, value) {
      const arn = arnOf(name);
      secrets.set(name, { arn, value, versionId: randomUUID(), created: Date.now() });
      return arn;
    },
    stop: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}

function reply(response: ServerResponse, status: number, type: string, message: string): void {
  response.writeHead(status, { 'content-type': 'application/x-amz-json-1.1' });
  response.end(JSON.stringify({ __type: type, message }));
}
