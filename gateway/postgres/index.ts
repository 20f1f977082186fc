/** gateway/postgres: the PostgreSQL data path. main.ts needs only this file. See README.md. */
export { PostgresListener, type PostgresListenerOptions, startPostgresListener } from "./listener.ts";
export { PG_ERROR_CATALOGUE, PgGatewayError, type PgErrorCode, isPgGatewayError } from "./errors.ts";
export type { SessionLogger } from "./session.ts";
export type { SqlPolicyApi } from "./policy-adapter.ts";
