/**
 * Mapping a verified identity to the grants it holds on a Connection. Deny by default: no matching,
 * currently valid grant means no connection.
 */
import type { BundleGrant, Identity, SubjectMatcher } from "../config/bundle.ts";
import { canonicalJson, grantSubjectsDigest } from "../config/canonical.ts";

/** Does this verified identity match a grant subject or approver matcher? */
export function subjectMatches(identity: Identity, matcher: SubjectMatcher): boolean {
	switch (matcher.kind) {
		case "User":
			// A service account is never matched by a User entry, even one spelled like its username.
			return identity.serviceAccount === undefined && identity.username === matcher.name;
		case "Group":
			return identity.groups.includes(matcher.name);
		case "ServiceAccount":
			return (
				identity.serviceAccount !== undefined &&
				identity.serviceAccount.namespace === matcher.namespace &&
				identity.serviceAccount.name === matcher.name
			);
		case "Claims": {
			if (identity.issuer !== matcher.issuer) return false;
			const entries = Object.entries(matcher.claims);
			if (entries.length === 0) return false;
			return entries.every(([claim, expected]) => {
				// An address the provider says it has not verified is anyone's (the rule TokenVerifier
				// applies to `email` as a user name): it matches no `email` entry.
				if (claim === "email" && "email_verified" in identity.claims && identity.claims.email_verified !== true) return false;
				const actual = identity.claims[claim];
				if (typeof actual === "string") return actual === expected;
				if (Array.isArray(actual)) return actual.includes(expected);
				if (typeof actual === "number" || typeof actual === "boolean") return String(actual) === expected;
				return false;
			});
		}
	}
}

/**
 * Is `identity`, using `grant`, among the subjects `matchers` lift a restriction for (a masking
 * exemption)? A personal credential: when a matcher matches it. A grant's shared credential
 * (`identity.grant`: one per grant, held by every subject of the grant, naming only the first in `sub`
 * and every Group subject in `groups`) could be held by any of the grant's subjects, so only when each
 * of them is named in `matchers` as written in the grant: before, adding someone to a grant whose first
 * User subject was exempt from masking handed them that person's exemption through the grant's token.
 */
export function exemptionApplies(identity: Identity, grant: Pick<BundleGrant, "subjects">, matchers: readonly SubjectMatcher[]): boolean {
	if (identity.grant === undefined) return matchers.some((m) => subjectMatches(identity, m));
	const named = new Set(matchers.map((m) => canonicalJson(m)));
	return grant.subjects.length > 0 && grant.subjects.every((s) => named.has(canonicalJson(s)));
}

/** A stable, human-readable name for an identity in messages and recordings. */
export function describeIdentity(identity: Identity): string {
	if (identity.serviceAccount) {
		return `serviceaccount:${identity.serviceAccount.namespace}/${identity.serviceAccount.name}`;
	}
	return `user:${identity.username}`;
}

export interface GrantLookup {
	/** Grants currently valid for this identity on this connection, latest expiry first. */
	active: BundleGrant[];
	/**
	 * Grants that match but are outside their window, or (operator credentials) whose subjects changed
	 * since the credential was minted: used to say why in errors.
	 */
	inactive: { grant: BundleGrant; reason: "expired" | "not-yet-valid" | "subjects-changed" }[];
}

/**
 * Grants of `identity` on connection `connectionName`. A token minted by the operator for one grant
 * (`identity.grant`) only ever unlocks that grant, whatever else its subject holds, and only while the
 * grant names the subjects it was minted for (`identity.grantSubjects`): the operator delivers one
 * credential per grant, shared by everyone the grant names, so a subject removed from the grant still
 * holds a copy of the credential minted before; a credential without the digest is refused too.
 */
export function findGrants(
	identity: Identity,
	connectionName: string,
	grants: readonly BundleGrant[],
	now: Date,
): GrantLookup {
	const active: BundleGrant[] = [];
	const inactive: GrantLookup["inactive"] = [];
	const t = now.getTime();
	for (const grant of grants) {
		if (grant.connection !== connectionName) continue;
		if (identity.grant !== undefined) {
			if (identity.grant !== grant.key) continue;
			if (identity.grantSubjects !== grantSubjectsDigest(grant.subjects)) {
				inactive.push({ grant, reason: "subjects-changed" });
				continue;
			}
		} else if (!grant.subjects.some((s) => subjectMatches(identity, s))) {
			continue;
		}
		const notBefore = Date.parse(grant.notBefore);
		const expiresAt = Date.parse(grant.expiresAt);
		if (!(expiresAt > t)) inactive.push({ grant, reason: "expired" });
		else if (notBefore > t) inactive.push({ grant, reason: "not-yet-valid" });
		else active.push(grant);
	}
	active.sort((a, b) => Date.parse(b.expiresAt) - Date.parse(a.expiresAt));
	return { active, inactive };
}

/** The message a data path sends when no grant matched. Names the identity, never the token. */
export function noGrantMessage(identity: Identity, connectionName: string, lookup: GrantLookup): string {
	const who = describeIdentity(identity);
	const expired = lookup.inactive.find((i) => i.reason === "expired");
	if (expired) {
		return `access denied for ${who} on connection "${connectionName}": grant ${expired.grant.key} expired at ${expired.grant.expiresAt}`;
	}
	const changed = lookup.inactive.find((i) => i.reason === "subjects-changed");
	if (changed) {
		return `access denied for ${who} on connection "${connectionName}": this credential was issued for grant ${changed.grant.key} before its subjects changed (or without their digest); use the grant's current credential`;
	}
	const pending = lookup.inactive.find((i) => i.reason === "not-yet-valid");
	if (pending) {
		return `access denied for ${who} on connection "${connectionName}": grant ${pending.grant.key} is not valid before ${pending.grant.notBefore}`;
	}
	return `access denied for ${who} (issuer ${identity.issuer}) on connection "${connectionName}": no grant matches`;
}
