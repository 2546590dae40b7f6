import { expect } from 'vitest';
import { RelayFailure } from '../../lambda/core/failures.ts';

/** The RelayFailure a promise rejects with; fails the test if it resolves or rejects with anything else. */
export async function failureOf(promise: Promise<unknown>): Promise<RelayFailure> {
  const error = await promise.then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(RelayFailure);
  return error as RelayFailure;
}
