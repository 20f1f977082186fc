// Minimal typings for the parts of oidc-provider (which ships none) that test/env/oidc.ts uses.
declare module "oidc-provider" {
	import type { IncomingMessage, ServerResponse } from "node:http";

	export interface InteractionDetails {
		uid: string;
		params: Record<string, unknown>;
		prompt: { name: string; reasons: string[]; details: Record<string, unknown> };
	}

	export interface GrantInstance {
		addOIDCScope(scope: string): void;
		save(): Promise<string>;
	}

	export default class Provider {
		constructor(issuer: string, configuration: Record<string, unknown>);
		readonly issuer: string;
		callback(): (req: IncomingMessage, res: ServerResponse) => void;
		interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<InteractionDetails>;
		interactionFinished(
			req: IncomingMessage,
			res: ServerResponse,
			result: Record<string, unknown>,
			options?: { mergeWithLastSubmission?: boolean },
		): Promise<void>;
		Grant: new (init: { accountId: string; clientId: string }) => GrantInstance;
		on(event: string, listener: (ctx: unknown, err: Error) => void): this;
	}
}
