import { createSendHandler } from './create-handler.ts';

/** Lambda entry point (SQS event source, ReportBatchItemFailures). */
export const handler = createSendHandler(process.env);
