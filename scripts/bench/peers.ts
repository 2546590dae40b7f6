// The benchmark's peers, in a process of their own so that the measured process spends CPU only on
// the function's work: the project's Graph peer (Entra ID token endpoint + Graph, HTTPS) and SMTP
// peer (STARTTLS), and the zero-cost AWS stub (aws-stub.ts). Each provider answers a send after a
// fixed time (BENCH_ANSWER_MS). Started by bench.ts with an IPC channel: it reports its endpoints,
// answers count requests, sets the Graph peer's limits and reports what a mailbox's sends met at them
// (the pacing scenarios), and stops when told to or when the benchmark goes away.
import { createClientCertificate } from '../../local/peers/certificates.ts';
import { startGraphPeer } from '../../local/peers/graph-peer.ts';
import { startSmtpPeer } from '../../local/peers/smtp-peer.ts';
import { startAwsStub } from './aws-stub.ts';
import type { PeerCounts, PeerMailboxPacing, PeersMessage, PeersRequest } from './protocol.ts';

const TENANT_ID = '00000000-0000-4000-8000-0000000be7c4';
const CLIENT_ID = '00000000-0000-4000-8000-00000000c11e';
const CLIENT_SECRET = 'bench-client-secret';
const GRAPH_SECRET_NAME = 'mail-relay-bench/graph-credential';

const answerMs = Number(process.env.BENCH_ANSWER_MS);
if (!Number.isFinite(answerMs) || answerMs < 0) throw new Error('BENCH_ANSWER_MS must be a number >= 0');

const send = (message: PeersMessage) => process.send?.(message);

const certificate = await createClientCertificate();
const graph = await startGraphPeer({
  tenantId: TENANT_ID,
  clients: [{ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, certificatePem: certificate.certificatePem }],
  // Written after the request was processed: the peer's own time comes on top (the report shows it).
  latencyMs: answerMs,
});
// Greets at once (smtp-server waits 100 ms by default), so a new connection costs only its round trips.
const smtp = await startSmtpPeer({ tls: 'starttls', answerDelayMs: answerMs, greetingDelayMs: 0 });
const aws = await startAwsStub({
  sesAnswerMs: answerMs,
  secrets: {
    [GRAPH_SECRET_NAME]: JSON.stringify({
      certificate: certificate.certificatePem,
      privateKey: certificate.privateKeyPem,
    }),
  },
});

let stopping: Promise<void> | undefined;
const stop = () => {
  stopping ??= Promise.allSettled([graph.close(), smtp.close(), aws.close()]).then(() => process.exit(0));
  return stopping;
};
process.on('disconnect', () => void stop());
process.on('message', (request: PeersRequest) => {
  if (request.type === 'stop') void stop();
  else if (request.type === 'counts') send({ type: 'counts', id: request.id, counts: counts() });
  else if (request.type === 'limits') {
    graph.setLimits({ ...request.limits });
    send({ type: 'limits', id: request.id });
  } else if (request.type === 'pacing') {
    send({
      type: 'pacing',
      id: request.id,
      mailboxes: Object.fromEntries(request.mailboxes.map((mailbox) => [mailbox, pacingOf(mailbox)])),
    });
  }
});

/** What a pacing scenario's mailbox met at the Graph peer, and what it delivered. */
function pacingOf(mailbox: string): PeerMailboxPacing {
  const stats = graph.pacingStats(mailbox);
  const address = mailbox.toLowerCase();
  const subjects = graph.delivered
    .filter((message) => message.mailbox.toLowerCase() === address)
    .map((message) => String(message.message.subject ?? ''));
  return {
    acceptedAt: stats.acceptedSends.map((send) => send.at),
    peakSendRequestsOpen: stats.peakSendRequestsOpen,
    throttledByCode: stats.throttledByCode,
    throttledAt: stats.throttled.map((throttle) => throttle.at),
    delivered: subjects.length,
    uniqueSubjects: new Set(subjects).size,
  };
}

function counts(): PeerCounts {
  const byOperation: Record<string, number> = {};
  let graphSendMailMs = 0;
  for (const request of graph.requests) {
    byOperation[request.operation] = (byOperation[request.operation] ?? 0) + 1;
    if (request.operation === 'sendMail') graphSendMailMs += request.endedAt - request.startedAt;
  }
  return {
    aws: aws.counts(),
    graph: byOperation,
    graphSendMailMs,
    graphDelivered: graph.delivered.length,
    smtpReceived: smtp.received.length,
    smtpConnections: smtp.connections,
  };
}

send({
  type: 'ready',
  endpoints: {
    aws: aws.endpoint,
    graph: {
      url: graph.url,
      tenantId: TENANT_ID,
      clientId: CLIENT_ID,
      clientSecret: CLIENT_SECRET,
      credentialSecretArn: aws.secretArn(GRAPH_SECRET_NAME),
    },
    smtp: { host: smtp.host, port: smtp.port },
    caCertificates: { graph: graph.caCertificate, smtp: smtp.caCertificate },
  },
});
