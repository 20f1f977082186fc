/** Resource types of the Drawbridge API as the kube client addresses them. */

import { drawbridgeType } from "../kube/client.ts";

export const CONNECTIONS = drawbridgeType("Connection", "connections");
export const ACCESSGRANTS = drawbridgeType("AccessGrant", "accessgrants");
export const MASKINGPOLICIES = drawbridgeType("MaskingPolicy", "maskingpolicies");
export const GUARDRAILPOLICIES = drawbridgeType("GuardrailPolicy", "guardrailpolicies");
export const GITSOURCES = drawbridgeType("GitSource", "gitsources");

export const TYPE_BY_KIND = Object.freeze({
	Connection: CONNECTIONS,
	AccessGrant: ACCESSGRANTS,
	MaskingPolicy: MASKINGPOLICIES,
	GuardrailPolicy: GUARDRAILPOLICIES,
});

export function splitKey(key: string): [string, string] {
	const i = key.indexOf("/");
	return [key.slice(0, i), key.slice(i + 1)];
}
