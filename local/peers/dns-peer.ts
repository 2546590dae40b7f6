import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { createServer, isIPv4, isIPv6, type Socket as NetSocket, type Server } from 'node:net';

/**
 * A local DNS peer: an authoritative UDP server on 127.0.0.1 for a zone given as plain records (what
 * `mail-relay doctor` reads in local mode and in its tests). RFC 1035 wire format, written by hand:
 * A, AAAA, TXT, MX and CNAME answers (and ANY: all of a name's records), NXDOMAIN for names the zone
 * does not have, NOERROR without answers for a name without the asked type (RFC 8020: a name with
 * names below it exists). EDNS(0) (RFC 6891): a query with an OPT record gets one back and answers up
 * to its UDP size; a bigger answer comes back truncated (TC, no records) and the resolver asks again
 * over TCP, which the peer serves on the same port. Not modelled: zone transfers, DNSSEC, wildcards,
 * delegation. Malformed packets are ignored (over TCP: the connection is closed).
 */

export interface DnsRecordSet {
  readonly a?: readonly string[];
  readonly aaaa?: readonly string[];
  /** One TXT record per string; longer than 255 bytes, it goes out as several character-strings. */
  readonly txt?: readonly string[];
  readonly mx?: readonly { readonly exchange: string; readonly priority: number }[];
  /** An alias: queries for other types follow it within the zone. */
  readonly cname?: string;
}

/** Records by name: case-insensitive, without the trailing dot. */
export type DnsRecords = Readonly<Record<string, DnsRecordSet>>;

export interface DnsQuestion {
  /** Lower case, without the trailing dot. */
  readonly name: string;
  /** `A`, `AAAA`, `TXT`, `MX`, `CNAME`, `ANY`, else `TYPE<n>`. */
  readonly type: string;
}

export interface DnsPeerOptions {
  /** default 0 (a free port); the host is always 127.0.0.1 */
  readonly port?: number;
  readonly records: DnsRecords;
}

export interface DnsPeer {
  readonly host: string;
  readonly port: number;
  /** `127.0.0.1:PORT`, as Resolver.setServers and createDnsLookup take it. */
  readonly address: string;
  /** Replaces the zone (answers from the next query on). Throws on an invalid address or name. */
  setRecords(records: DnsRecords): void;
  /** Every question answered so far, in order. */
  readonly queries: readonly DnsQuestion[];
  close(): Promise<void>;
}

const HOST = '127.0.0.1';
const TTL_SECONDS = 60;
const HEADER_BYTES = 12;
/** Without EDNS a UDP answer may carry at most 512 bytes (RFC 1035 4.2.1). */
const CLASSIC_UDP_BYTES = 512;
/** What the peer advertises and the most it sends with EDNS (the DNS flag day 2020 size). */
const EDNS_UDP_BYTES = 1232;
const MAX_TCP_BYTES = 0xffff;
const MAX_CNAME_HOPS = 8;

const TYPE = { A: 1, CNAME: 5, MX: 15, TXT: 16, AAAA: 28, OPT: 41, ANY: 255 } as const;
const CLASS_IN = 1;
const RCODE = { noError: 0, formErr: 1, nxDomain: 3, notImp: 4, refused: 5 } as const;
const TYPE_NAMES = new Map<number, string>(Object.entries(TYPE).map(([name, code]) => [code, name]));

/** A query the peer could not read: dropped without an answer. */
class MalformedPacket extends Error {}

interface ParsedQuery {
  readonly id: number;
  readonly flags: number;
  readonly labels: readonly Buffer[];
  readonly type: number;
  readonly klass: number;
  /** The requester's UDP size when the query had an OPT record. */
  readonly ednsUdpBytes?: number;
}

export async function startDnsPeer(options: DnsPeerOptions): Promise<DnsPeer> {
  let zone = normalizedZone(options.records);
  const queries: DnsQuestion[] = [];

  /** The answer to a packet, undefined when it is dropped (malformed, or not a query). */
  const answerTo = (packet: Buffer, transport: 'udp' | 'tcp'): Buffer | undefined => {
    try {
      const query = parseQuery(packet);
      if (query === undefined) return undefined;
      queries.push({ name: nameOf(query.labels), type: TYPE_NAMES.get(query.type) ?? `TYPE${query.type}` });
      return buildAnswer(query, zone, transport);
    } catch {
      return undefined; // a malformed packet (or one the peer cannot answer): the peer keeps serving
    }
  };

  const { udp, tcp, port } = await bindBoth(options.port ?? 0);
  // After start-up an error (an ICMP unreachable reported late) must not crash the process.
  udp.on('error', () => {});
  udp.on('message', (packet: Buffer, from: RemoteInfo) => {
    const answer = answerTo(packet, 'udp');
    // A send that fails (the requester went away) is the requester's problem, not the peer's.
    if (answer) udp.send(answer, from.port, from.address, () => {});
  });
  const connections = new Set<NetSocket>();
  tcp.on('connection', (connection) => {
    connections.add(connection);
    connection.on('close', () => connections.delete(connection));
    connection.on('error', () => connection.destroy());
    // DNS over TCP (RFC 1035 4.2.2, RFC 7766): each message behind its 2-byte length.
    let pending = Buffer.alloc(0);
    connection.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
        const packet = pending.subarray(2, 2 + pending.readUInt16BE(0));
        pending = pending.subarray(2 + packet.length);
        const answer = answerTo(packet, 'tcp');
        if (answer === undefined) {
          connection.destroy(); // a stream that carried garbage cannot be trusted to re-align
          return;
        }
        connection.write(Buffer.concat([u16(answer.length), answer]));
      }
    });
  });

  return {
    host: HOST,
    port,
    address: `${HOST}:${port}`,
    setRecords(records) {
      zone = normalizedZone(records);
    },
    queries,
    async close() {
      for (const connection of connections) connection.destroy();
      await Promise.all([closeSocket(udp), new Promise<void>((resolve) => tcp.close(() => resolve()))]);
    },
  };
}

/**
 * A UDP socket and a TCP server on the same port: resolvers retry a truncated answer over TCP on the
 * port they asked over UDP. With port 0, a free UDP port whose TCP twin is free too.
 */
async function bindBoth(port: number): Promise<{ udp: Socket; tcp: Server; port: number }> {
  for (let attempt = 0; ; attempt += 1) {
    const udp = createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(port, HOST, () => {
        udp.off('error', reject);
        resolve();
      });
    });
    const bound = udp.address().port;
    const tcp = createServer();
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen(bound, HOST, () => {
          tcp.off('error', reject);
          resolve();
        });
      });
      return { udp, tcp, port: bound };
    } catch (error) {
      await closeSocket(udp);
      if (port !== 0 || attempt >= 20) throw error;
    }
  }
}

function closeSocket(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    try {
      socket.close(() => resolve());
    } catch {
      resolve(); // already closed
    }
  });
}

// ---- the zone ----

type Zone = ReadonlyMap<string, DnsRecordSet>;

function normalizedName(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

function normalizedZone(records: DnsRecords): Zone {
  const zone = new Map<string, DnsRecordSet>();
  for (const [name, set] of Object.entries(records)) {
    const key = normalizedName(name);
    encodeName(key); // throws on a name DNS cannot carry
    for (const address of set.a ?? []) {
      if (!isIPv4(address)) throw new Error(`dns peer: ${name}: a: ${address} is not an IPv4 address`);
    }
    for (const address of set.aaaa ?? []) {
      if (!isIPv6(address)) throw new Error(`dns peer: ${name}: aaaa: ${address} is not an IPv6 address`);
    }
    for (const mx of set.mx ?? []) {
      if (!Number.isInteger(mx.priority) || mx.priority < 0 || mx.priority > 0xffff) {
        throw new Error(`dns peer: ${name}: mx priority ${mx.priority} is not 0-65535`);
      }
      encodeName(mx.exchange);
    }
    if (set.cname !== undefined) encodeName(set.cname);
    zone.set(key, set);
  }
  return zone;
}

/** Whether the name exists: it has records, or names below it do (an empty non-terminal). */
function nameExists(zone: Zone, name: string): boolean {
  if (zone.has(name)) return true;
  for (const key of zone.keys()) if (key.endsWith(`.${name}`)) return true;
  return false;
}

// ---- reading a query ----

/** The query, undefined for a packet that is not a query (a response), throws MalformedPacket. */
function parseQuery(packet: Buffer): ParsedQuery | undefined {
  if (packet.length < HEADER_BYTES) throw new MalformedPacket();
  const id = packet.readUInt16BE(0);
  const flags = packet.readUInt16BE(2);
  if ((flags & 0x8000) !== 0) return undefined; // a response: never answer those (no loops)
  const questions = packet.readUInt16BE(4);
  if (questions !== 1) throw new MalformedPacket();
  const { labels, end } = readName(packet, HEADER_BYTES);
  if (end + 4 > packet.length) throw new MalformedPacket();
  const type = packet.readUInt16BE(end);
  const klass = packet.readUInt16BE(end + 2);
  const ednsUdpBytes = readEdnsUdpBytes(packet, end + 4);
  return ednsUdpBytes === undefined
    ? { id, flags, labels, type, klass }
    : { id, flags, labels, type, klass, ednsUdpBytes };
}

/**
 * A name at `offset`, following compression pointers (RFC 1035 4.1.4) with a bound on jumps so a
 * pointer loop cannot hang the peer. `end` is where the name ends in the packet (after a pointer: after it).
 */
function readName(packet: Buffer, offset: number): { labels: Buffer[]; end: number } {
  const labels: Buffer[] = [];
  let position = offset;
  let end: number | undefined;
  let jumps = 0;
  let length = 1;
  for (;;) {
    if (position >= packet.length) throw new MalformedPacket();
    const byte = packet.readUInt8(position);
    if ((byte & 0xc0) === 0xc0) {
      if (position + 1 >= packet.length || jumps >= 16) throw new MalformedPacket();
      end ??= position + 2;
      position = ((byte & 0x3f) << 8) | packet.readUInt8(position + 1);
      jumps += 1;
      continue;
    }
    if ((byte & 0xc0) !== 0) throw new MalformedPacket(); // the reserved label types
    if (byte === 0) return { labels, end: end ?? position + 1 };
    if (position + 1 + byte > packet.length) throw new MalformedPacket();
    length += byte + 1;
    if (length > 255) throw new MalformedPacket();
    labels.push(packet.subarray(position + 1, position + 1 + byte));
    position += 1 + byte;
  }
}

/** The UDP size of an OPT record in the additional section, when the query has one. */
function readEdnsUdpBytes(packet: Buffer, offset: number): number | undefined {
  const answers = packet.readUInt16BE(6);
  const authorities = packet.readUInt16BE(8);
  const additionals = packet.readUInt16BE(10);
  if (answers !== 0 || authorities !== 0 || additionals === 0) return undefined;
  try {
    let position = offset;
    for (let index = 0; index < additionals; index += 1) {
      const { end } = readName(packet, position);
      if (end + 10 > packet.length) return undefined;
      const type = packet.readUInt16BE(end);
      const klass = packet.readUInt16BE(end + 2);
      if (type === TYPE.OPT) return klass;
      position = end + 10 + packet.readUInt16BE(end + 8);
    }
  } catch (error) {
    // A query whose additional section cannot be read is still answered, without EDNS.
    if (!(error instanceof MalformedPacket)) throw error;
  }
  return undefined;
}

function nameOf(labels: readonly Buffer[]): string {
  return labels
    .map((label) => label.toString('latin1'))
    .join('.')
    .toLowerCase();
}

// ---- writing the answer ----

function buildAnswer(query: ParsedQuery, zone: Zone, transport: 'udp' | 'tcp'): Buffer {
  const opcode = (query.flags >> 11) & 0x0f;
  const question = Buffer.concat([encodeLabels(query.labels), u16(query.type), u16(query.klass)]);
  let rcode: number = RCODE.noError;
  let records: Buffer[] = [];
  if (opcode !== 0) rcode = RCODE.notImp;
  else if (query.klass !== CLASS_IN) rcode = RCODE.refused;
  else ({ rcode, records } = resolveInZone(zone, nameOf(query.labels), query.type));

  const limit =
    transport === 'tcp'
      ? MAX_TCP_BYTES
      : query.ednsUdpBytes === undefined
        ? CLASSIC_UDP_BYTES
        : Math.min(Math.max(query.ednsUdpBytes, CLASSIC_UDP_BYTES), EDNS_UDP_BYTES);
  // OPT: root name, type 41, class = our UDP size, extended rcode/version/flags 0, no options.
  const opt = query.ednsUdpBytes === undefined ? [] : [Buffer.from([0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0])];
  const header = (answers: number, truncated: boolean) => {
    // QR, the query's opcode and RD, AA (the zone is ours), RA (as a recursive resolver says), TC.
    const flags =
      0x8000 | (opcode << 11) | 0x0400 | (truncated ? 0x0200 : 0) | (query.flags & 0x0100) | 0x0080 | rcode;
    return Buffer.concat([u16(query.id), u16(flags), u16(1), u16(answers), u16(0), u16(opt.length)]);
  };
  const full = Buffer.concat([header(records.length, false), question, ...records, ...opt]);
  if (full.length <= limit) return full;
  return Buffer.concat([header(0, true), question, ...opt]);
}

/** The answer records for a question, following CNAMEs within the zone. */
function resolveInZone(zone: Zone, name: string, type: number): { rcode: number; records: Buffer[] } {
  const records: Buffer[] = [];
  let owner = name;
  for (let hop = 0; hop <= MAX_CNAME_HOPS; hop += 1) {
    // The first owner is the question's name: a pointer to it (offset 12) is shorter and keeps its case.
    const ownerBytes = hop === 0 ? Buffer.from([0xc0, HEADER_BYTES]) : encodeName(owner);
    const set = zone.get(owner);
    if (set === undefined) {
      return { rcode: nameExists(zone, owner) ? RCODE.noError : RCODE.nxDomain, records };
    }
    if (set.cname !== undefined && type !== TYPE.CNAME && type !== TYPE.ANY) {
      records.push(resourceRecord(ownerBytes, TYPE.CNAME, encodeName(set.cname)));
      owner = normalizedName(set.cname);
      continue;
    }
    records.push(...recordsOf(set, type).map(([rrType, data]) => resourceRecord(ownerBytes, rrType, data)));
    return { rcode: RCODE.noError, records };
  }
  return { rcode: RCODE.noError, records }; // a CNAME chain too long: what was found so far
}

function recordsOf(set: DnsRecordSet, type: number): [number, Buffer][] {
  const all = type === TYPE.ANY;
  const found: [number, Buffer][] = [];
  if (all || type === TYPE.A) for (const address of set.a ?? []) found.push([TYPE.A, ipv4Bytes(address)]);
  if (all || type === TYPE.AAAA) {
    for (const address of set.aaaa ?? []) found.push([TYPE.AAAA, ipv6Bytes(address)]);
  }
  if (all || type === TYPE.TXT) for (const text of set.txt ?? []) found.push([TYPE.TXT, txtData(text)]);
  if (all || type === TYPE.MX) {
    for (const mx of set.mx ?? [])
      found.push([TYPE.MX, Buffer.concat([u16(mx.priority), encodeName(mx.exchange)])]);
  }
  if ((all || type === TYPE.CNAME) && set.cname !== undefined)
    found.push([TYPE.CNAME, encodeName(set.cname)]);
  return found;
}

function resourceRecord(owner: Buffer, type: number, data: Buffer): Buffer {
  const ttl = Buffer.alloc(4);
  ttl.writeUInt32BE(TTL_SECONDS);
  return Buffer.concat([owner, u16(type), u16(CLASS_IN), ttl, u16(data.length), data]);
}

/** A TXT record's data: the text in character-strings of at most 255 bytes each (RFC 1035 3.3.14). */
function txtData(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  const parts: Buffer[] = [];
  for (let offset = 0; offset < bytes.length || parts.length === 0; offset += 255) {
    const chunk = bytes.subarray(offset, offset + 255);
    parts.push(Buffer.from([chunk.length]), chunk);
  }
  return Buffer.concat(parts);
}

function encodeName(name: string): Buffer {
  const trimmed = name.replace(/\.$/, '');
  const labels = trimmed === '' ? [] : trimmed.split('.').map((label) => Buffer.from(label, 'latin1'));
  return encodeLabels(labels, name);
}

function encodeLabels(labels: readonly Buffer[], name?: string): Buffer {
  for (const label of labels) {
    if (label.length === 0 || label.length > 63) {
      throw new Error(`dns peer: ${name ?? nameOf(labels)}: labels must have 1 to 63 bytes`);
    }
  }
  const encoded = Buffer.concat([
    ...labels.flatMap((label) => [Buffer.from([label.length]), label]),
    Buffer.from([0]),
  ]);
  if (encoded.length > 255) throw new Error(`dns peer: ${name ?? nameOf(labels)}: longer than 255 bytes`);
  return encoded;
}

function u16(value: number): Buffer {
  const buffer = Buffer.alloc(2);
  buffer.writeUInt16BE(value);
  return buffer;
}

function ipv4Bytes(address: string): Buffer {
  return Buffer.from(address.split('.').map(Number));
}

/** The 16 bytes of an IPv6 address (checked with isIPv6 first): `::` expanded, a dotted IPv4 tail read. */
function ipv6Bytes(address: string): Buffer {
  let text = address.replace(/%.*$/, '');
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted?.[1] !== undefined) {
    const [a = 0, b = 0, c = 0, d = 0] = dotted[1].split('.').map(Number);
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const groupsOf = (part: string) =>
    part === '' ? [] : part.split(':').map((group) => Number.parseInt(group, 16));
  const first = groupsOf(head);
  const last = tail === undefined ? [] : groupsOf(tail);
  const groups = [...first, ...new Array<number>(8 - first.length - last.length).fill(0), ...last];
  return Buffer.concat(groups.map(u16));
}
