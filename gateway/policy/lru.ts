/** A small LRU map: Map keeps insertion order, so re-inserting on hit moves a key to the end. */
export class Lru<K, V> {
	readonly #map = new Map<K, V>();
	readonly #max: number;

	constructor(max: number) {
		if (!Number.isInteger(max) || max < 1) throw new TypeError(`Lru: max must be a positive integer, got ${max}`);
		this.#max = max;
	}

	get(key: K): V | undefined {
		const value = this.#map.get(key);
		if (value === undefined) return undefined;
		this.#map.delete(key);
		this.#map.set(key, value);
		return value;
	}

	set(key: K, value: V): void {
		this.#map.delete(key);
		this.#map.set(key, value);
		if (this.#map.size > this.#max) {
			const oldest = this.#map.keys().next();
			if (!oldest.done) this.#map.delete(oldest.value);
		}
	}

	get size(): number {
		return this.#map.size;
	}

	clear(): void {
		this.#map.clear();
	}
}
