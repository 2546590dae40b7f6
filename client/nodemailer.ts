/** `mail-relay/nodemailer`: a nodemailer transport that enqueues on the relay's outbox. */
export {
  type MailRelaySentMessageInfo,
  MailRelayTransport,
  type MailRelayTransportOptions,
} from './nodemailer-transport.ts';
export { RelayMessageError } from './relay-client.ts';
