/**
 * A Catalog built from plain data: the relations of the demo schema used by policy tests and the
 * bypass corpus (the same shape as test/env's seeded customers/orders). Pure input data, not a
 * mock of a server: the postgres data path implements Catalog against real pg_catalog queries.
 */
import type { Catalog, FunctionCatalog, MaskContext, RelationInfo } from "../types.ts";
import type { BundleGrant, Identity, MaskRule } from "../../config/bundle.ts";

export class DataCatalog implements Catalog, FunctionCatalog {
	readonly #byName = new Map<string, RelationInfo>();
	readonly #byOid = new Map<number, RelationInfo>();

	constructor(
		relations: RelationInfo[],
		readonly searchPath: string[] = ["pg_catalog", "public"],
		readonly userFunctions: Set<string> = new Set(),
	) {
		for (const r of relations) {
			this.#byName.set(`${r.schema}.${r.name}`, r);
			this.#byOid.set(r.oid, r);
		}
	}

	async relation(schema: string | undefined, name: string): Promise<RelationInfo | undefined> {
		if (schema) return this.#byName.get(`${schema}.${name}`);
		for (const s of this.searchPath) {
			const r = this.#byName.get(`${s}.${name}`);
			if (r) return r;
		}
		return undefined;
	}

	async relationByOid(oid: number): Promise<RelationInfo | undefined> {
		return this.#byOid.get(oid);
	}

	async relationsInSchema(schema: string): Promise<RelationInfo[]> {
		return [...this.#byOid.values()].filter((r) => r.schema === schema);
	}

	async isBuiltinFunction(schema: string | undefined, name: string): Promise<boolean> {
		if (schema && schema !== "pg_catalog") return false;
		return !this.userFunctions.has(name);
	}
}

function cols(...names: string[]): { name: string; attnum: number }[] {
	return names.map((name, i) => ({ name, attnum: i + 1 }));
}

/**
 * The seeded schema of test/env/seed.ts (customers, orders, two views) plus a few test-only relations.
 * View definitions are as the gateway's catalog prints them (pg_catalog alone in the search_path):
 * names outside pg_catalog schema-qualified.
 */
export const DEMO_RELATIONS: RelationInfo[] = [
	{
		oid: 16401,
		schema: "public",
		name: "customers",
		kind: "table",
		columns: cols("id", "name", "email", "phone", "card_number", "iban", "created"),
	},
	{ oid: 16402, schema: "public", name: "orders", kind: "table", columns: cols("id", "customer_id", "amount", "status", "created") },
	{
		oid: 16404,
		schema: "public",
		name: "customer_contacts",
		kind: "view",
		columns: cols("id", "name", "email", "phone"),
		viewDefinition: " SELECT id,\n    name,\n    email,\n    phone\n   FROM public.customers;",
	},
	{
		oid: 16405,
		schema: "public",
		name: "customer_order_totals",
		kind: "view",
		columns: cols("id", "name", "email", "orders", "total"),
		viewDefinition:
			" SELECT c.id,\n    c.name,\n    c.email,\n    count(o.id) AS orders,\n    COALESCE(sum(o.amount), 0::numeric) AS total\n   FROM public.customers c\n     LEFT JOIN public.orders o ON o.customer_id = c.id\n  GROUP BY c.id, c.name, c.email;",
	},
	// Test-only relations (not in the seeded database).
	{ oid: 16403, schema: "public", name: "audit_copy", kind: "table", columns: cols("id", "email", "note") },
	{
		oid: 16406,
		schema: "public",
		name: "contact_emails",
		kind: "view",
		columns: cols("contact"),
		viewDefinition: " SELECT lower(customer_contacts.email) AS contact\n   FROM public.customer_contacts;",
	},
	{ oid: 16407, schema: "billing", name: "customers", kind: "table", columns: cols("id", "email", "iban") },
	{
		oid: 16408,
		schema: "public",
		name: "customer_mv",
		kind: "matview",
		columns: cols("id", "card_number"),
		viewDefinition: " SELECT customers.id,\n    customers.card_number\n   FROM public.customers;",
	},
	{ oid: 12001, schema: "pg_catalog", name: "pg_stats", kind: "view", columns: cols("schemaname", "tablename", "attname", "most_common_vals") },
	{ oid: 12002, schema: "pg_catalog", name: "pg_class", kind: "table", columns: cols("oid", "relname", "relnamespace") },
];

/** Masking rules matching the seeded schema. */
export const DEMO_RULES: MaskRule[] = [
	{ name: "email", columns: ["customers.email", "billing.customers.email"], strategy: { type: "redact" } },
	{ name: "card", columns: ["public.customers.card_number"], strategy: { type: "partial", keepLast: 4 } },
	{ name: "iban", columns: ["*.customers.iban"], strategy: { type: "null" } },
	{ name: "phone", columns: ["customers.phone"], strategy: { type: "hash", length: 16 } },
	{ name: "pii-content", detectors: ["creditCard", "email", "iban", "nationalId"], strategy: { type: "redact" } },
];

export function demoContext(overrides: Partial<MaskContext> = {}): MaskContext {
	const identity: Identity = {
		issuer: "https://issuer.test",
		issuerKind: "oidc",
		subject: "agent",
		username: "agent",
		groups: [],
		tokenExpiresAt: new Date(Date.now() + 3600_000),
		claims: {},
	};
	const grant: BundleGrant = {
		key: "team/agent-ro",
		name: "agent-ro",
		namespace: "team",
		connection: "orders-prod",
		subjects: [{ kind: "User", name: "agent" }],
		notBefore: "2026-01-01T00:00:00Z",
		expiresAt: "2027-01-01T00:00:00Z",
		postgres: { access: "read-only" },
		approvers: { subjects: [], minApprovals: 1 },
		origin: {},
	};
	return {
		rules: DEMO_RULES,
		catalog: new DataCatalog(DEMO_RELATIONS, ["pg_catalog", "public"], new Set(["get_email"])),
		identity,
		grant,
		maskingKey: Buffer.alloc(32, 7),
		...overrides,
	};
}
