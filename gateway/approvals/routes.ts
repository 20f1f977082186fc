/**
 * Approvals REST API, a fastify plugin the gateway registers on its admin server:
 *
 *   GET  /api/v1/approvals[?phase=Pending]   requests the caller may see (requester or approver)
 *   GET  /api/v1/approvals/:id               one request
 *   POST /api/v1/approvals/:id/approve       {"comment"?: string}
 *   POST /api/v1/approvals/:id/deny          {"comment"?: string}
 *
 * Every route needs `Authorization: Bearer <token>`; the injected `authenticate` verifies it (the
 * identity module: issuer, signature, audience, expiry) and returns the Identity. Errors are JSON
 * `{"error": {"code", "message"}}` with the status from APPROVAL_ERROR_HTTP_STATUS: 401 no/invalid/
 * expired token, 403 self-approval / not an approver / not allowed to see, 404 unknown id, 409 already
 * decided or already voted, 410 expired, 400 malformed input.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { Identity } from "../config/bundle.ts";
import { IdentityError } from "../identity/errors.ts";
import type { TokenVerifier } from "../identity/verify.ts";
import { canView } from "./decision.ts";
import { APPROVAL_ERROR_HTTP_STATUS, ApprovalError } from "./errors.ts";
import type { ApprovalPhase, ApprovalService } from "./types.ts";
import { registerApprovalPages } from "./web.ts";

export const APPROVALS_API_PREFIX = "/api/v1/approvals";
const PHASES: readonly ApprovalPhase[] = ["Pending", "Approved", "Denied", "Expired", "Cancelled"];
const MAX_COMMENT = 1024;

export interface ApprovalRoutesOptions {
	service: ApprovalService;
	/** Verify the caller's bearer token; throw (IdentityError, ApprovalError or anything) to refuse with 401. */
	authenticate: (request: FastifyRequest) => Promise<Identity>;
	/** Route prefix (default `/api/v1/approvals`). */
	prefix?: string;
	/** Also serve the approvals web page at /approvals and /approvals/:id (default true). */
	pages?: boolean;
}

/** The bearer token of a request, or undefined. */
export function bearerToken(request: FastifyRequest): string | undefined {
	const header = request.headers.authorization;
	if (typeof header !== "string") return undefined;
	const m = /^Bearer\s+([A-Za-z0-9._~+/=-]+)\s*$/i.exec(header);
	return m?.[1];
}

/**
 * `authenticate` for the routes, backed by the identity module's TokenVerifier. Pass a function to
 * follow bundle reloads (the verifier of the current bundle's issuers).
 */
export function verifierAuthenticator(verifier: TokenVerifier | (() => TokenVerifier)): (request: FastifyRequest) => Promise<Identity> {
	return async (request) => {
		const token = bearerToken(request);
		if (!token) throw new ApprovalError("unauthenticated", "missing bearer token (Authorization: Bearer <token>)");
		return (typeof verifier === "function" ? verifier() : verifier).verify(token);
	};
}

function sendError(reply: FastifyReply, err: ApprovalError): FastifyReply {
	const status = APPROVAL_ERROR_HTTP_STATUS[err.code];
	if (status === 401) reply.header("www-authenticate", 'Bearer realm="drawbridge-approvals"');
	return reply.code(status).send({ error: { code: err.code, message: err.message } });
}

function toApprovalError(err: unknown): ApprovalError | undefined {
	if (err instanceof ApprovalError) return err;
	if (err instanceof IdentityError) return new ApprovalError("unauthenticated", `token refused: ${err.message}`);
	return undefined;
}

export async function registerApprovalRoutes(app: FastifyInstance, options: ApprovalRoutesOptions): Promise<void> {
	const prefix = (options.prefix ?? APPROVALS_API_PREFIX).replace(/\/+$/, "");
	const { service } = options;
	if (options.pages !== false) registerApprovalPages(app);

	const identify = async (request: FastifyRequest): Promise<Identity> => {
		try {
			return await options.authenticate(request);
		} catch (err) {
			const known = toApprovalError(err);
			if (known && known.code !== "unauthenticated") throw known;
			throw new ApprovalError("unauthenticated", known?.message ?? "the bearer token could not be verified");
		}
	};

	const handle =
		<T>(fn: (request: FastifyRequest, identity: Identity) => Promise<T>) =>
		async (request: FastifyRequest, reply: FastifyReply) => {
			try {
				const identity = await identify(request);
				return await fn(request, identity);
			} catch (err) {
				const known = toApprovalError(err);
				if (known) return sendError(reply, known);
				request.log.error({ err }, "approvals API failure");
				return sendError(reply, new ApprovalError("unavailable", "the approvals store failed; see gateway logs"));
			}
		};

	const idOf = (request: FastifyRequest): string => {
		const id = (request.params as { id?: unknown }).id;
		if (typeof id !== "string" || !/^[a-z0-9][a-z0-9-]{0,62}$/.test(id)) throw new ApprovalError("not-found", "no such approval request");
		return id;
	};

	app.get(
		prefix,
		handle(async (request, identity) => {
			const phase = (request.query as { phase?: unknown } | undefined)?.phase;
			if (phase !== undefined && !PHASES.includes(phase as ApprovalPhase)) {
				throw new ApprovalError("bad-request", `phase must be one of ${PHASES.join(", ")}`);
			}
			const items = await service.list(phase ? { phase: phase as ApprovalPhase } : undefined);
			return { items: items.filter((r) => canView(r, identity)) };
		}),
	);

	app.get(
		`${prefix}/:id`,
		handle(async (request, identity) => {
			const id = idOf(request);
			const record = await service.get(id);
			if (!record) throw new ApprovalError("not-found", `approval ${id} does not exist`);
			if (!canView(record, identity)) throw new ApprovalError("forbidden", `you are neither the requester nor an approver of ${id}`);
			return record;
		}),
	);

	for (const decision of ["approve", "deny"] as const) {
		app.post(
			`${prefix}/:id/${decision}`,
			handle(async (request, identity) => {
				const id = idOf(request);
				const body = (request.body ?? {}) as { comment?: unknown };
				if (typeof body !== "object" || Array.isArray(body)) throw new ApprovalError("bad-request", "body must be a JSON object");
				if (body.comment !== undefined && (typeof body.comment !== "string" || body.comment.length > MAX_COMMENT)) {
					throw new ApprovalError("bad-request", `comment must be a string of at most ${MAX_COMMENT} characters`);
				}
				return service.decide(id, identity, decision, body.comment as string | undefined);
			}),
		);
	}
}
