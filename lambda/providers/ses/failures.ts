import { FailureTable } from '../../core/failures.ts';

/** Amazon SES v2 SendEmail errors (docs.aws.amazon.com/ses/latest/APIReference-V2/API_SendEmail.html) and the relay's own checks before sending. */
export const SES_FAILURES = new FailureTable('ses', [
  {
    code: 'TooManyRequestsException',
    failureClass: 'transient',
    hint: 'SES sending rate exceeded; the relay retries. Raise the SES rate or lower sendFunction.maxConcurrency.',
  },
  { code: 'ThrottlingException', failureClass: 'transient' },
  { code: 'InternalFailure', failureClass: 'transient' },
  { code: 'ServiceUnavailable', failureClass: 'transient' },
  {
    code: 'LimitExceededException',
    failureClass: 'provider',
    hint: 'The SES daily sending quota is used up; request a higher quota in the SES console.',
  },
  {
    code: 'SendingPausedException',
    failureClass: 'provider',
    hint: 'Sending is paused for the account or configuration set (often after high bounce/complaint rates); check SES reputation.',
  },
  {
    code: 'AccountSuspendedException',
    failureClass: 'provider',
    hint: 'The SES account may not send; contact AWS Support.',
  },
  {
    code: 'MailFromDomainNotVerifiedException',
    failureClass: 'provider',
    hint: "The identity's custom MAIL FROM domain is not verified; check its MX and SPF records.",
  },
  {
    code: 'AccessDeniedException',
    failureClass: 'provider',
    hint: 'The function may not send as this identity; check ses.identities in the configuration and redeploy.',
  },
  {
    code: 'NotFoundException',
    failureClass: 'provider',
    hint: 'A resource named in the request does not exist, usually ses.configurationSetName.',
  },
  {
    code: 'MessageRejected',
    failureClass: 'permanent',
    hint: 'SES refused this message: its content, or (in the SES sandbox) a recipient that is not verified.',
  },
  { code: 'BadRequestException', failureClass: 'permanent' },
  {
    code: 'TooManyRecipients',
    failureClass: 'permanent',
    cannotCarry: true,
    hint: 'SES takes at most 50 recipients per message: split the message, or send it through Graph or SMTP (Exchange Online takes 500).',
  },
  {
    code: 'MessageTooLarge',
    failureClass: 'permanent',
    cannotCarry: true,
    hint: 'SES takes at most 40 MB per message once encoded; send large files through Microsoft Graph (150 MB) or as links.',
  },
  {
    // docs.aws.amazon.com/ses/latest/APIReference-V2/API_Destination.html: SES does not support SMTPUTF8.
    code: 'AddressNotSupported',
    failureClass: 'provider',
    cannotCarry: true,
    hint: 'SES cannot send from or to an address whose local part is not ASCII (SMTPUTF8): route such messages through Microsoft Graph or an SMTP server that offers SMTPUTF8.',
  },
]);
