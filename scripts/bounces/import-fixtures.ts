/**
 * Regenerates test/fixtures/bounces/ (a selection of real bounce messages and expected.json) from two
 * local git mirrors of public sisimai repositories:
 * - sisimai/set-of-emails: the corpus (BSD 2-Clause, Copyright (C) 2014, azumakuniyuki);
 * - sisimai/rb-sisimai: its published expected results (test/public/*.rb, one tuple per recipient),
 *   which were written against the copy of the corpus vendored there (set-of-emails/).
 *
 *   npx tsx scripts/bounces/import-fixtures.ts [--corpus <git dir>] [--expectations <git dir>]
 *
 * A message is taken from set-of-emails when its bytes are found there (under its current name, which
 * for a few engines changed since, e.g. lhost-aol → rhost-aol), else from rb-sisimai's vendored copy
 * (the bytes the expectations describe). Addresses that look real are replaced, in the file and
 * nowhere else (the expectations hold no addresses). The tests read only the committed output.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    corpus: { type: 'string', default: '/work/.mirror/sisimai+set-of-emails/repo' },
    expectations: { type: 'string', default: '/work/.mirror/sisimai+rb-sisimai/repo' },
    out: { type: 'string', default: join(import.meta.dirname, '../../test/fixtures/bounces') },
  },
});
const corpusDir = args.corpus as string;
const expectationsDir = args.expectations as string;
const outDir = args.out as string;

/**
 * The engines a relay's sending mailbox meets: MTAs and mailbox providers (lhost-*, rhost-*), plain
 * RFC 3464 reports, and, as messages that are not bounces, complaint reports (arf) and auto-replies
 * (rfc3834). Security appliances and Japanese mobile carriers are left out.
 */
const ENGINES = [
  'lhost-postfix',
  'lhost-sendmail',
  'lhost-exim',
  'lhost-qmail',
  'lhost-courier',
  'lhost-exchange2003',
  'lhost-exchange2007',
  'lhost-office365',
  'lhost-outlook',
  'lhost-gmail',
  'lhost-googlegroups',
  'lhost-gsuite',
  'lhost-yahoo',
  'lhost-aol',
  'lhost-opensmtpd',
  'lhost-messagingserver',
  'lhost-domino',
  'lhost-notes',
  'lhost-zoho',
  'lhost-yandex',
  'lhost-mailru',
  'lhost-gmx',
  'lhost-amazonses',
  'lhost-amazonworkmail',
  'lhost-sendgrid',
  'lhost-x1',
  'lhost-x2',
  'lhost-x3',
  'lhost-x4',
  'lhost-x5',
  'lhost-x6',
  'lhost-v5sendmail',
  'rhost-apple',
  'rhost-cox',
  'rhost-franceptt',
  'rhost-godaddy',
  'rhost-google',
  'rhost-iua',
  'rhost-microsoft',
  'rhost-mimecast',
  'rhost-spectrum',
  'rhost-tencent',
  'rhost-yahooinc',
  'rfc3464',
  'rfc3834',
  'arf',
] as const;

/** Engines with many samples: at most this many, the ones that test the classification first. */
const MAX_PER_ENGINE = 12;

/**
 * Addresses in the selection that look like a real person's, each replaced in every file that holds it.
 * The rest of the corpus is already fictitious (example.jp, pseudo-local-part-…, role addresses).
 */
const REPLACEMENTS: readonly (readonly [string, string])[] = [
  // A student's address at a real school (lhost-exchange2007-05); same length, so no line changes.
  ['gwang1@student.', 'pupil1@student.'],
  // A first name at a real domain (rfc3834-05).
  ['karl@hanz.de', 'user@example.de'],
];

/**
 * Replaces a literal also where a quoted-printable soft line break (`=` at a line end) splits it,
 * keeping the breaks where they were.
 */
function replaceAcrossSoftBreaks(content: string, from: string, to: string): string {
  const softBreak = '(?:=\\r?\\n)?';
  const pattern = new RegExp(
    [...from].map((char) => char.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join(softBreak),
    'gi',
  );
  return content.replace(pattern, (match) => {
    let index = 0;
    const replaced = match.replace(/=\r?\n|[\s\S]/g, (piece) =>
      piece.length > 1 && piece.startsWith('=') ? piece : (to[index++] ?? ''),
    );
    return replaced + to.slice(index);
  });
}

export interface ExpectedRecipient {
  /** Sisimai's delivery status: the report's, or its own (5.0.9xx are sisimai's pseudo codes). */
  readonly status: string;
  readonly replyCode: string;
  /** Sisimai's reason (userunknown, mailboxfull, …). */
  readonly reason: string;
  /** Sisimai's hard-bounce verdict. */
  readonly hard: boolean;
}

function git(dir: string, ...command: string[]): Buffer {
  return execFileSync('git', ['-C', dir, ...command], { maxBuffer: 64 * 1024 * 1024 });
}

/** `'NN' => [['D.S.N.', 'replycode', 'REASON', hardbounce], ...]` per sample of one engine. */
function expectationsOf(engine: string): Map<string, ExpectedRecipient[]> {
  const table = git(expectationsDir, 'show', `HEAD:test/public/${engine}.rb`).toString('utf8');
  const samples = new Map<string, ExpectedRecipient[]>();
  let current: ExpectedRecipient[] | undefined;
  for (const line of table.split('\n')) {
    const index = /^\s*'(\d+)'\s*=>/.exec(line);
    if (index) {
      current = [];
      samples.set((index[1] as string).padStart(2, '0'), current);
    }
    for (const tuple of line.matchAll(
      /\['([^']*)',\s*'([^']*)',\s*'([^']*)',\s*(true|false)(?:,[^\]]*)?\]/g,
    )) {
      current?.push({
        status: tuple[1] as string,
        replyCode: tuple[2] as string,
        reason: tuple[3] as string,
        hard: tuple[4] === 'true',
      });
    }
  }
  return samples;
}

/** Files at HEAD: name → blob id. */
function blobs(dir: string, under: string): Map<string, string> {
  const listing = git(dir, 'ls-tree', '-r', 'HEAD', under).toString('utf8');
  const map = new Map<string, string>();
  for (const line of listing.split('\n')) {
    const match = /^\d+ blob ([0-9a-f]+)\t(.+)$/.exec(line);
    if (match) map.set(match[2] as string, match[1] as string);
  }
  return map;
}

/** Orders an engine's samples: the ones that test the classification first, then by number. */
function interest(recipients: readonly ExpectedRecipient[]): number {
  const addressClass = (status: string) => /^5\.(1\.\d+|2\.1)$/.test(status);
  if (recipients.length > 1) return 0;
  if (recipients.some((r) => !r.hard && addressClass(r.status))) return 0; // 5.1.x/5.2.1 yet soft
  if (recipients.some((r) => r.hard && !addressClass(r.status))) return 0; // hard with a generic code
  return 1;
}

function main(): void {
  const corpusCommit = git(corpusDir, 'rev-parse', 'HEAD').toString('utf8').trim();
  const expectationsCommit = git(expectationsDir, 'rev-parse', 'HEAD').toString('utf8').trim();
  const version = /VERSION\s*=\s*'([^']+)'/.exec(
    git(expectationsDir, 'show', 'HEAD:lib/sisimai/version.rb').toString('utf8'),
  )?.[1];
  const corpusBlobs = blobs(corpusDir, 'maildir/bsd');
  const corpusByBlob = new Map([...corpusBlobs].map(([path, blob]) => [blob, path]));
  const vendoredBlobs = blobs(expectationsDir, 'set-of-emails/maildir/bsd');

  // The generated files only: README.md is written by hand.
  mkdirSync(outDir, { recursive: true });
  for (const file of readdirSync(outDir)) {
    if (file.endsWith('.eml')) rmSync(join(outDir, file));
  }
  const fixtures: Record<string, unknown> = {};
  const replaced: string[] = [];
  for (const engine of ENGINES) {
    const samples = [...expectationsOf(engine)]
      .filter(([, recipients]) => recipients.length > 0)
      .sort(([a, ra], [b, rb]) => interest(ra) - interest(rb) || a.localeCompare(b))
      .slice(0, MAX_PER_ENGINE)
      .sort(([a], [b]) => a.localeCompare(b));
    for (const [index, recipients] of samples) {
      const sisimaiName = `${engine}-${index}.eml`;
      const vendoredPath = `set-of-emails/maildir/bsd/${sisimaiName}`;
      const blob = vendoredBlobs.get(vendoredPath);
      if (blob === undefined) continue;
      // set-of-emails at HEAD: under the same name, or the name these bytes moved to since.
      const sameName = `maildir/bsd/${sisimaiName}`;
      const corpusPath = corpusBlobs.get(sameName) === blob ? sameName : corpusByBlob.get(blob);
      const bytes = git(corpusPath ? corpusDir : expectationsDir, 'cat-file', 'blob', blob);
      let content = bytes.toString('latin1');
      for (const [from, to] of REPLACEMENTS) {
        const next = replaceAcrossSoftBreaks(content, from, to);
        if (next !== content) replaced.push(`${sisimaiName} (${from})`);
        content = next;
      }
      // The name the expectations use, so a fixture is found in rb-sisimai's tables by it.
      writeFileSync(join(outDir, sisimaiName), Buffer.from(content, 'latin1'));
      fixtures[sisimaiName] = {
        engine,
        // Where the bytes are: set-of-emails when it has them (a renamed file names its new path).
        source: corpusPath ? `set-of-emails:${corpusPath}` : `rb-sisimai:${vendoredPath}`,
        recipients,
      };
    }
  }
  const expected = {
    source: {
      corpus: 'https://github.com/sisimai/set-of-emails',
      corpusCommit,
      expectations: 'https://github.com/sisimai/rb-sisimai (test/public/*.rb)',
      expectationsCommit,
      sisimaiVersion: version,
      license: 'BSD 2-Clause, Copyright (C) 2014, azumakuniyuki: see LICENSE-sisimai',
    },
    fixtures,
  };
  writeFileSync(join(outDir, 'expected.json'), `${JSON.stringify(expected, null, 2)}\n`);
  writeFileSync(join(outDir, 'LICENSE-sisimai'), git(corpusDir, 'show', 'HEAD:LICENSE'));
  const count = readdirSync(outDir).filter((file) => file.endsWith('.eml')).length;
  process.stdout.write(
    `${count} fixtures written to ${outDir}; addresses replaced in: ${replaced.join(', ') || 'none'}\n`,
  );
}

main();
