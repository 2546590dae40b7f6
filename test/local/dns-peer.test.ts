import { createSocket } from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { type DnsPeer, type DnsRecords, startDnsPeer } from '../../local/peers/dns-peer.ts';

const ZONE: DnsRecords = {
  'contoso.com': {
    a: ['192.0.2.10', '192.0.2.11'],
    aaaa: ['2001:db8::1', '2001:db8:0:0:1::ffff', '::ffff:192.0.2.12'],
    txt: ['v=spf1 include:spf.protection.outlook.com -all', 'google-site-verification=abc'],
    mx: [
      { exchange: 'contoso-com.mail.protection.outlook.com', priority: 0 },
      { exchange: 'backup.contoso.com', priority: 20 },
    ],
  },
  '_dmarc.contoso.com': { txt: ['v=DMARC1; p=reject'] },
  'www.contoso.com': { cname: 'contoso.com' },
  'long.contoso.com': { txt: ['x'.repeat(300)] },
};

const peers: DnsPeer[] = [];
afterEach(async () => {
  await Promise.all(peers.splice(0).map((peer) => peer.close()));
});

async function peerWith(records: DnsRecords = ZONE): Promise<DnsPeer> {
  const peer = await startDnsPeer({ records });
  peers.push(peer);
  return peer;
}

function resolverFor(peer: DnsPeer): Resolver {
  const resolver = new Resolver({ timeout: 2_000, tries: 1 });
  resolver.setServers([peer.address]);
  return resolver;
}

async function errorCodeOf(query: Promise<unknown>): Promise<string | undefined> {
  try {
    await query;
  } catch (error) {
    return (error as { code?: string }).code;
  }
  throw new Error('expected the query to fail');
}

/** One raw UDP exchange with the peer: the first datagram that comes back. */
async function exchange(peer: DnsPeer, packet: Buffer): Promise<Buffer> {
  const socket = createSocket('udp4');
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      socket.once('message', resolve);
      socket.once('error', reject);
      socket.send(packet, peer.port, peer.host);
    });
  } finally {
    socket.close();
  }
}

/** A query for `name` (type 16: TXT), id 0x1234, RD set, no EDNS. */
function rawQuery(name: string, type = 16, id = 0x1234): Buffer {
  const labels = name
    .split('.')
    .flatMap((label) => [Buffer.from([label.length]), Buffer.from(label, 'latin1')]);
  return Buffer.concat([
    Buffer.from([id >> 8, id & 0xff, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]),
    ...labels,
    Buffer.from([0, 0, type, 0, 1]),
  ]);
}

describe('dns peer, through Node\u2019s resolver', () => {
  it('answers TXT records, each as one record', async () => {
    const resolver = resolverFor(await peerWith());
    const records = await resolver.resolveTxt('contoso.com');
    expect(records.map((parts) => parts.join(''))).toEqual([
      'v=spf1 include:spf.protection.outlook.com -all',
      'google-site-verification=abc',
    ]);
    expect(await resolver.resolveTxt('_dmarc.contoso.com')).toEqual([['v=DMARC1; p=reject']]);
  });

  it('splits a TXT string longer than 255 bytes into several character-strings', async () => {
    const resolver = resolverFor(await peerWith());
    expect(await resolver.resolveTxt('long.contoso.com')).toEqual([['x'.repeat(255), 'x'.repeat(45)]]);
  });

  it('answers MX, A and AAAA records', async () => {
    const resolver = resolverFor(await peerWith());
    expect(await resolver.resolveMx('contoso.com')).toEqual([
      { exchange: 'contoso-com.mail.protection.outlook.com', priority: 0 },
      { exchange: 'backup.contoso.com', priority: 20 },
    ]);
    expect(await resolver.resolve4('contoso.com')).toEqual(['192.0.2.10', '192.0.2.11']);
    expect(await resolver.resolve6('contoso.com')).toEqual([
      '2001:db8::1',
      '2001:db8::1:0:0:ffff',
      '::ffff:192.0.2.12',
    ]);
  });

  it('matches names case-insensitively, with or without the trailing dot', async () => {
    const resolver = resolverFor(await peerWith());
    expect(await resolver.resolve4('CONTOSO.Com.')).toEqual(['192.0.2.10', '192.0.2.11']);
  });

  it('follows a CNAME within the zone', async () => {
    const resolver = resolverFor(await peerWith());
    expect(await resolver.resolve4('www.contoso.com')).toEqual(['192.0.2.10', '192.0.2.11']);
    expect(await resolver.resolveCname('www.contoso.com')).toEqual(['contoso.com']);
  });

  it('answers NXDOMAIN for an unknown name (ENOTFOUND) and no data for a known name without the type (ENODATA)', async () => {
    const resolver = resolverFor(await peerWith());
    expect(await errorCodeOf(resolver.resolveTxt('fabrikam.com'))).toBe('ENOTFOUND');
    expect(await errorCodeOf(resolver.resolveMx('_dmarc.contoso.com'))).toBe('ENODATA');
  });

  it('records the questions and serves new records after setRecords', async () => {
    const peer = await peerWith();
    expect(await resolverFor(peer).resolveTxt('_dmarc.contoso.com')).toEqual([['v=DMARC1; p=reject']]);
    peer.setRecords({ '_dmarc.contoso.com': { txt: ['v=DMARC1; p=none'] } });
    expect(await resolverFor(peer).resolveTxt('_dmarc.contoso.com')).toEqual([['v=DMARC1; p=none']]);
    expect(await errorCodeOf(resolverFor(peer).resolve4('www.contoso.com'))).toBe('ENOTFOUND');
    // contoso.com has no records of its own now, but a name below it: it exists (RFC 8020).
    expect(await errorCodeOf(resolverFor(peer).resolve4('contoso.com'))).toBe('ENODATA');
    expect(peer.queries).toEqual([
      { name: '_dmarc.contoso.com', type: 'TXT' },
      { name: '_dmarc.contoso.com', type: 'TXT' },
      { name: 'www.contoso.com', type: 'A' },
      { name: 'contoso.com', type: 'A' },
    ]);
  });

  it('answers over TCP when the answer is too big for a datagram (the resolver retries after TC)', async () => {
    const txt = Array.from({ length: 6 }, (_, index) => `${index}${'y'.repeat(199)}`);
    const peer = await peerWith({ 'big.example': { txt } });
    const records = await resolverFor(peer).resolveTxt('big.example');
    expect(records.map((parts) => parts.join('')).sort()).toEqual(txt);
    expect(peer.queries.filter((query) => query.name === 'big.example').length).toBeGreaterThanOrEqual(2);
  });

  it('refuses records it could not serve', async () => {
    const peer = await peerWith();
    expect(() => peer.setRecords({ 'a.example': { a: ['2001:db8::1'] } })).toThrow(/not an IPv4 address/);
    expect(() => peer.setRecords({ 'a.example': { aaaa: ['192.0.2.1'] } })).toThrow(/not an IPv6 address/);
    expect(() => peer.setRecords({ [`${'x'.repeat(64)}.example`]: { a: ['192.0.2.1'] } })).toThrow(
      /63 bytes/,
    );
  });
});

describe('dns peer, on the wire', () => {
  it('sets QR, AA and RA, copies the id, RD and the question, and answers with TTL 60', async () => {
    const peer = await peerWith();
    const query = rawQuery('_dmarc.Contoso.com', 16, 0xbeef);
    const answer = await exchange(peer, query);
    expect(answer.readUInt16BE(0)).toBe(0xbeef);
    const flags = answer.readUInt16BE(2);
    expect(flags & 0x8000).toBe(0x8000); // QR
    expect(flags & 0x0400).toBe(0x0400); // AA
    expect(flags & 0x0100).toBe(0x0100); // RD, copied
    expect(flags & 0x0080).toBe(0x0080); // RA
    expect(flags & 0x000f).toBe(0); // NOERROR
    expect(answer.readUInt16BE(4)).toBe(1);
    expect(answer.readUInt16BE(6)).toBe(1);
    // The question as asked (its case kept), then the answer: a pointer to it, TXT, IN, TTL 60.
    const question = query.subarray(12);
    expect(answer.subarray(12, 12 + question.length)).toEqual(question);
    const record = 12 + question.length;
    expect(answer.readUInt16BE(record)).toBe(0xc00c);
    expect(answer.readUInt16BE(record + 2)).toBe(16);
    expect(answer.readUInt16BE(record + 4)).toBe(1);
    expect(answer.readUInt32BE(record + 6)).toBe(60);
  });

  it('answers rcode 3 for an unknown name', async () => {
    const answer = await exchange(await peerWith(), rawQuery('nowhere.example'));
    expect(answer.readUInt16BE(2) & 0x000f).toBe(3);
    expect(answer.readUInt16BE(6)).toBe(0);
  });

  it('reads a question whose name is compressed', async () => {
    const peer = await peerWith();
    // "_dmarc" then a pointer to "contoso.com" placed after the question's type and class.
    const header = Buffer.from([0x43, 0x21, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    const name = Buffer.concat([
      Buffer.from([6]),
      Buffer.from('_dmarc'),
      Buffer.from([0xc0, 12 + 7 + 2 + 4]),
    ]);
    const target = Buffer.from([7, ...Buffer.from('contoso'), 3, ...Buffer.from('com'), 0]);
    const answer = await exchange(peer, Buffer.concat([header, name, Buffer.from([0, 16, 0, 1]), target]));
    expect(answer.readUInt16BE(0)).toBe(0x4321);
    expect(answer.readUInt16BE(6)).toBe(1);
    expect(peer.queries).toEqual([{ name: '_dmarc.contoso.com', type: 'TXT' }]);
  });

  it('ignores malformed packets and keeps answering', async () => {
    const peer = await peerWith();
    const socket = createSocket('udp4');
    const send = (packet: Buffer) =>
      new Promise<void>((resolve, reject) =>
        socket.send(packet, peer.port, peer.host, (error) => (error ? reject(error) : resolve())),
      );
    await send(Buffer.from([1, 2, 3]));
    await send(
      Buffer.concat([rawQuery('contoso.com').subarray(0, 12), Buffer.from([0xc0, 12, 0, 16, 0, 1])]),
    );
    await send(Buffer.concat([rawQuery('contoso.com').subarray(0, 12), Buffer.from([40, 1, 2])]));
    socket.close();
    // Datagrams from one sender arrive in order: once a later query is answered, the garbage was read.
    const answer = await exchange(peer, rawQuery('contoso.com'));
    expect(answer.readUInt16BE(6)).toBe(2);
    expect(peer.queries).toEqual([{ name: 'contoso.com', type: 'TXT' }]);
  });

  it('answers up to the EDNS size a query offers, with an OPT record of its own', async () => {
    const txt = Array.from({ length: 4 }, (_, index) => `${index}${'y'.repeat(199)}`);
    const peer = await peerWith({ 'big.example': { txt } });
    const plain = await exchange(peer, rawQuery('big.example'));
    expect(plain.readUInt16BE(2) & 0x0200).toBe(0x0200); // too big for 512 bytes: truncated
    expect(plain.readUInt16BE(6)).toBe(0);
    const opt = Buffer.from([0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    const query = Buffer.concat([rawQuery('big.example'), opt]);
    query.writeUInt16BE(1, 10);
    const answer = await exchange(peer, query);
    expect(answer.readUInt16BE(2) & 0x0200).toBe(0);
    expect(answer.readUInt16BE(6)).toBe(4);
    expect(answer.readUInt16BE(10)).toBe(1);
    expect(answer.subarray(-11)).toEqual(opt);
  });
});
