/**
 * The frame of a contract suite (one set of tests run against each implementation of an interface):
 * a `describe` per implementation, opened before its tests and closed after them. When it cannot be
 * opened (a service missing, which fails under CI=true: services.ts) every test says why it skipped.
 */
import { after, before, describe, type TestContext, test } from 'node:test';

export interface ContractSuite<T> {
  /** The implementation under test (opened by then). */
  subject(): T;
  /** A test of the contract, skipped with the reason when the implementation could not be opened. */
  test(name: string, fn: (t: TestContext) => Promise<void>): void;
}

export function contractSuite<T extends { close(): Promise<void> }>(
  title: string,
  open: () => Promise<T | { skip: string }>,
  body: (suite: ContractSuite<T>) => void,
): void {
  describe(title, () => {
    let subject: T | undefined;
    let skip: string | undefined;
    before(async () => {
      const opened = await open();
      if ('skip' in opened) skip = opened.skip;
      else subject = opened;
    });
    after(async () => {
      await subject?.close();
    });
    body({
      subject: () => subject!,
      test: (name, fn) =>
        test(name, async (t) => {
          if (skip) return t.skip(skip);
          await fn(t);
        }),
    });
  });
}
