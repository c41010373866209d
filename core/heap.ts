/**
 * A binary min-heap keyed by a number, for the engine's retry queue.
 *
 * @module
 */

/** A min-heap of items ordered by a numeric key (smallest first). */
export class MinHeap<T> {
  #keys: number[] = [];
  #items: T[] = [];

  /** Number of items held. */
  get size(): number {
    return this.#items.length;
  }

  /** The smallest key, or undefined when empty. */
  peekKey(): number | undefined {
    return this.#keys[0];
  }

  /** Add an item with its key. */
  push(key: number, item: T): void {
    const keys = this.#keys, items = this.#items;
    let i = keys.length;
    keys.push(key);
    items.push(item);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (keys[p] <= key) break;
      keys[i] = keys[p];
      items[i] = items[p];
      i = p;
    }
    keys[i] = key;
    items[i] = item;
  }

  /** Remove and return the item with the smallest key. */
  pop(): T | undefined {
    const keys = this.#keys, items = this.#items;
    if (items.length === 0) return undefined;
    const top = items[0];
    const lastKey = keys.pop()!;
    const lastItem = items.pop()!;
    const n = items.length;
    if (n > 0) {
      let i = 0;
      while (true) {
        let c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && keys[c + 1] < keys[c]) c++;
        if (keys[c] >= lastKey) break;
        keys[i] = keys[c];
        items[i] = items[c];
        i = c;
      }
      keys[i] = lastKey;
      items[i] = lastItem;
    }
    return top;
  }

  /** Remove and return every item (in no particular order). */
  drain(): T[] {
    const out = this.#items;
    this.#items = [];
    this.#keys = [];
    return out;
  }
}
