import type { Assumptions, ConfigCost, FixedItem, LineItem, WorkloadCost } from './cost-model.ts';
import { EC2_INSTANCE_HOUR, PRICES, PRICES_READ_ON, type Price } from './prices.ts';

export function dollars(value: number): string {
  if (value === 0) return '$0';
  return Math.abs(value) >= 0.01 ? `$${value.toFixed(2)}` : `$${value.toFixed(4)}`;
}

function quantity(value: number): string {
  if (value === 0) return '0';
  if (Math.abs(value) >= 100) return Math.round(value).toLocaleString('en-US');
  return Number(value.toPrecision(3)).toString();
}

function unitPrice(price: Price): string {
  const perMillion = price.dollars < 0.001;
  return perMillion
    ? `$${Number((price.dollars * 1e6).toPrecision(6))}/M`
    : `$${Number(price.dollars.toPrecision(6))}`;
}

function workloadTitle(workload: WorkloadCost['workload']): string {
  const route = workload.route ? `route ${workload.route}, ` : '';
  return `${workload.provider} (${route}provider ${workload.providerName}, ${workload.senders} sender${workload.senders === 1 ? '' : 's'})`;
}

function assumptionLines(assumptions: Assumptions): string[] {
  const answers = Object.entries(assumptions.providerAnswerMs)
    .map(([provider, ms]) => `${provider} ${ms} ms`)
    .join(', ');
  const rates = Object.entries(assumptions.sesEventRates)
    .map(([type, rate]) => `${type} ${rate * 100}%`)
    .join(', ');
  return [
    `Messages: ${assumptions.messagesPerMonth.toLocaleString('en-US')} a month of ~${assumptions.messageKb} KB each (the mail request on the queue: text and HTML).`,
    `Lambda duration per invocation = provider answer time (${answers}; records of a batch are sent concurrently) + ${assumptions.awsCallMs} ms per AWS call a record makes (in sequence) + the measured CPU per message × batch size.`,
    `SES events per message: ${rates}; only the subscribed types invoke the feedback function (${assumptions.feedbackCpuMs} ms CPU + ${assumptions.awsCallMs} ms per AWS call each).`,
    `Provider payload through a NAT: the measured SES request, else the message × 4/3 (base64) + ${assumptions.providerRequestOverheadBytes} bytes.`,
    `Scheduled functions: ${assumptions.scheduledRunMs} ms billed per run. Idle SQS polling: ${assumptions.idlePollersPerQueue} pollers per event source mapping, a 20 s long poll each.`,
    'Not counted: free tiers, log storage ($0.03/GB-month, kept for the retention the template sets), KMS and SNS requests, data transfer out to the internet, failures, retries and waits (the workload has none).',
  ];
}

function itemRow(item: LineItem): string[] {
  const tag = item.provider ? ' (provider, not overhead)' : item.staticEgress ? ' (static egress)' : '';
  return [
    `${item.what}${tag}`,
    `${quantity(item.quantity)} ${item.unit}`,
    unitPrice(item.price),
    dollars(item.perMillion),
  ];
}

function fixedRow(item: FixedItem): string[] {
  return [item.what, quantity(item.quantity), unitPrice(item.price), dollars(item.perMonth)];
}

function stageLines(cost: WorkloadCost): string[] {
  return cost.workload.stages.map((stage) => {
    const calls = Object.entries(stage.aws.calls)
      .map(([api, count]) => `${api} ${quantity(count)}`)
      .join(', ');
    return `${stage.functionId}: per message ${calls || 'no AWS calls'}; ${quantity(stage.aws.writeUnits)} WRU, ${quantity(stage.aws.readUnits)} RRU (${quantity(stage.aws.conditionFailures)} failed conditions); ${stage.logBytesPerMessage} B of logs (${stage.emfBytesPerMessage} B EMF, ${quantity(stage.emfDocumentsPerMessage)} documents); CPU ${stage.cpuMsPerMessage} ms; batches of ${stage.batchSize}`;
  });
}

/** Plain text for the terminal: every table, with its inputs. */
export function formatText(costs: readonly ConfigCost[], assumptions: Assumptions): string {
  const out: string[] = [`Prices: us-east-1 list prices read ${PRICES_READ_ON} (scripts/cost/prices.ts).`];
  out.push(...assumptionLines(assumptions).map((line) => `- ${line}`));
  for (const cost of costs) {
    out.push('', `=== ${cost.measurement.config} ===`);
    for (const workload of cost.workloads) {
      out.push(
        '',
        `${workloadTitle(workload.workload)}, per million messages of ${workload.workload.messageBytes} bytes:`,
      );
      out.push(table(['item', 'per message', 'unit price', 'per million'], workload.items.map(itemRow)));
      out.push(
        `relay overhead ${dollars(workload.relayOverhead)} per million (without the static-egress part ${dollars(workload.relayOverheadWithoutEgress)}); provider ${dollars(workload.providerPrice)}; ${dollars(workload.monthlyOverhead)} a month`,
      );
      out.push(...stageLines(workload).map((line) => `  ${line}`));
    }
    out.push('', 'Fixed per month:');
    out.push(table(['item', 'quantity', 'unit price', 'per month'], cost.fixed.map(fixedRow)));
    out.push(
      `fixed ${dollars(cost.fixedTotal)} a month; without static egress ${dollars(cost.fixedWithoutEgress)}; without Mail Manager ${dollars(cost.fixedWithoutIngress)}`,
    );
    out.push(`custom metrics (from the measured runs' EMF): ${cost.metrics.join(' ') || 'none'}`);
    out.push(...cost.notes.map((note) => `note: ${note}`));
  }
  return out.join('\n');
}

function table(head: string[], rows: string[][]): string {
  const widths = head.map((cell, index) =>
    Math.max(cell.length, ...rows.map((row) => (row[index] ?? '').length)),
  );
  const line = (cells: string[]) =>
    cells
      .map((cell, index) =>
        index === 0 ? cell.padEnd(widths[index] ?? 0) : cell.padStart(widths[index] ?? 0),
      )
      .join('  ');
  return [line(head), widths.map((width) => '-'.repeat(width)).join('  '), ...rows.map(line)].join('\n');
}

function markdownTable(head: string[], rows: string[][], align: string[]): string {
  return [
    `| ${head.join(' | ')} |`,
    `| ${align.join(' | ')} |`,
    ...rows.map((row) => `| ${row.join(' | ')} |`),
  ].join('\n');
}

export const README_HEADING = '### What it costs';

/**
 * The README's cost section: a summary of every configuration measured, the line items of the first
 * (the full example), its fixed costs, the assumptions and the prices with their date and source.
 */
export function formatMarkdown(
  costs: readonly ConfigCost[],
  assumptions: Assumptions,
  measuredOn: string,
  notMeasured: readonly string[] = [],
): string {
  const [detail] = costs;
  const out: string[] = [
    README_HEADING,
    '',
    '<!-- Generated by `npm run cost -- --update-readme` from scripts/cost/readme-inputs.json: do not edit by hand. -->',
    '',
    `What the relay costs to run, counted from the synthesized template of each example configuration and the`,
    `work of the real send bundle on a workload of ~${assumptions.messageKb} KB messages (calls, capacity units, events`,
    `and log bytes measured ${measuredOn}), priced at us-east-1 list prices read ${PRICES_READ_ON}. **Relay overhead** is`,
    `everything but the provider's own price (SES $0.10 per 1,000; Graph and SMTP none). \`npm run cost\` measures`,
    'the code as it is now and prints every line item; `--config FILE`, `--message-kb`, `--messages-per-month`, `--json`.',
    '',
    markdownTable(
      [
        'configuration',
        'workload',
        'relay overhead per million',
        'of which static egress',
        'fixed per month (without egress)',
      ],
      costs.flatMap((cost) =>
        cost.workloads.map((workload, index) => [
          index === 0 ? `\`${cost.measurement.config}\`` : '',
          workload.workload.providerName,
          dollars(workload.relayOverhead),
          dollars(workload.relayOverhead - workload.relayOverheadWithoutEgress),
          index === 0
            ? `${dollars(cost.fixedWithoutIngress)} (${dollars(cost.fixedWithoutIngress - (cost.fixedTotal - cost.fixedWithoutEgress))})`
            : '',
        ]),
      ),
      ['---', '---', '---:', '---:', '---:'],
    ),
    '',
    'Fixed costs leave out Mail Manager ingress endpoints ($50 a month each, `ingress`), listed below when configured.',
    '',
    // What no configuration gets below: the queue and the never-twice ledger themselves.
    "What the figures cannot go below: per message, the producer's SendMessage and the poller's receive cost one SQS request per 64 KB each (about $0.80 per million 50 KB messages), and the delivery ledger two conditional writes (the hand-off right before the send and the outcome after it: $1.25 per million), so about $2.05 before Lambda and logs. Graph adds a pacing write for its minute schedule and one for its day count (another $1.25). The static-egress part is the NAT's per-GB fee, none with `nat: \"instance\"`.",
    ...(notMeasured.length > 0
      ? [
          '',
          `Not measured (they did not synthesize or send when this was generated): ${notMeasured.map((c) => `\`${c}\``).join(', ')}.`,
        ]
      : []),
  ];
  if (detail) {
    out.push('', `Per million messages, \`${detail.measurement.config}\`:`, '');
    for (const workload of detail.workloads) {
      out.push(
        `${workloadTitle(workload.workload)}: relay overhead **${dollars(workload.relayOverhead)}** (${dollars(workload.relayOverheadWithoutEgress)} without the static-egress part)`,
        '',
        markdownTable(['item', 'per message', 'unit price', 'per million'], workload.items.map(itemRow), [
          '---',
          '---:',
          '---:',
          '---:',
        ]),
        '',
      );
    }
    out.push(
      `Fixed per month, \`${detail.measurement.config}\`: **${dollars(detail.fixedTotal)}** (${dollars(detail.fixedWithoutEgress)} without static egress, ${dollars(detail.fixedWithoutIngress)} without Mail Manager)`,
      '',
      markdownTable(['item', 'quantity', 'unit price', 'per month'], detail.fixed.map(fixedRow), [
        '---',
        '---:',
        '---:',
        '---:',
      ]),
      '',
      `Custom metrics priced (what the measured runs wrote): ${detail.metrics.map((metric) => `\`${metric}\``).join(', ') || 'none'}.`,
      ...detail.notes.map((note) => `${note}`),
    );
  }
  out.push('', 'Assumptions:', '', ...assumptionLines(assumptions).map((line) => `- ${line}`));
  out.push(
    '',
    `Prices (us-east-1, list, read ${PRICES_READ_ON}; "verified" where this repository states the same figure):`,
    '',
    markdownTable(
      ['what', 'price', 'source'],
      [...Object.values(PRICES), ...Object.values(EC2_INSTANCE_HOUR)].map((price: Price) => [
        price.unit,
        unitPrice(price),
        `${price.source}${price.verifiedBy ? `, verified against ${price.verifiedBy}` : ', unverified'}`,
      ]),
      ['---', '---:', '---'],
    ),
  );
  return `${out.join('\n')}\n`;
}
