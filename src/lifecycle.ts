/**
 * Ownership of things that must be let go: a DisposableStore (as VS Code's) that disposes what it
 * holds in reverse order of adding, once. Imports nothing of ours (a base module).
 *
 * The pattern: create a resource and hand it to its owner in one statement,
 * `const x = store.add(new X())`, so a failure anywhere after it still disposes it.
 */

/** Anything with a dispose method, sync or async (`using` / `await using` both accept it). */
export type AnyDisposable = Disposable | AsyncDisposable;

/** A disposable that runs `fn` once, however many times it is disposed. */
export function toDisposable(fn: () => void | Promise<void>): AsyncDisposable {
  let done: Promise<void> | undefined;
  return {
    [Symbol.asyncDispose]: () => {
      done ??= (async () => fn())();
      return done;
    },
  };
}

async function disposeOne(item: AnyDisposable): Promise<void> {
  if (Symbol.asyncDispose in item) await item[Symbol.asyncDispose]();
  else item[Symbol.dispose]();
}

/**
 * Holds disposables and disposes them last-added first. Disposal is idempotent (a second call
 * returns the first one's promise), awaits each item before the next, and goes on past an item
 * that throws; afterwards it rejects with that error (an AggregateError when several threw).
 */
export class DisposableStore implements AsyncDisposable {
  #items: AnyDisposable[] = [];
  #disposing: Promise<void> | undefined;

  get isDisposed(): boolean {
    return this.#disposing !== undefined;
  }

  /**
   * Takes ownership of `item` and returns it. Added to a store that is already disposed, the item
   * is disposed at once (its failure is lost: there is nobody left to report it to).
   */
  add<T extends AnyDisposable>(item: T): T {
    if (this.#disposing !== undefined) {
      disposeOne(item).catch(() => {});
      return item;
    }
    this.#items.push(item);
    return item;
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.#disposing ??= (async () => {
      const errors: unknown[] = [];
      while (this.#items.length > 0) {
        const item = this.#items.pop() as AnyDisposable;
        try {
          await disposeOne(item);
        } catch (err) {
          errors.push(err);
        }
      }
      if (errors.length === 1) throw errors[0];
      if (errors.length > 1) throw new AggregateError(errors, "several disposables failed");
    })();
    return this.#disposing;
  }
}
