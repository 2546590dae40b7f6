import * as z from 'zod';
import { isEmailAddress } from '../core/address.ts';
import { feedbackSettingsSchema, tableNameSchema } from '../core/settings.ts';
import { graphSettingsSchema } from '../providers/graph/settings.ts';

/** The bounce report reader's settings: the feedback settings, plus which mailboxes and how to reach them. */
export const bounceReportSettingsSchema = feedbackSettingsSchema.extend({
  graph: graphSettingsSchema,
  /** Sending mailboxes whose Inbox receives the non-delivery reports. */
  mailboxes: z
    .array(z.string().refine(isEmailAddress, { message: 'must be a mailbox address' }))
    .min(1, 'list at least one mailbox'),
  /** How far back the first reading of a mailbox looks. */
  lookbackMinutes: z.int().min(1).max(43_200),
  maxMessagesPerMailbox: z.int().min(1).max(1000),
  /** The ledger: which provider sent a reported message, and where each mailbox's reading stopped. */
  ledger: z.strictObject({ tableName: tableNameSchema }),
});
export type BounceReportSettings = z.infer<typeof bounceReportSettingsSchema>;
