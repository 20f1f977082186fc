/**
 * A minimal approvals web page, served by the same plugin as the REST API:
 *   GET /approvals          pending requests you may see
 *   GET /approvals/:id      one request, with Approve / Deny (`?decision=approve|deny` preselects)
 * Notification links point here. The page holds no authority of its own: it asks for the approver's
 * bearer token (kept in sessionStorage only), calls the REST API with it, and renders with textContent
 * (never innerHTML of request data). Script and style are separate responses so a strict CSP applies.
 */
import type { FastifyInstance } from "fastify";
import { INVISIBLE } from "../../crds/text.ts";

const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

const HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Drawbridge approvals</title><link rel="stylesheet" href="/approvals-assets/app.css"></head>
<body><header><h1>Drawbridge approvals</h1></header>
<main>
<section id="auth"><label for="token">Your OIDC ID token (kept in this tab only)</label>
<textarea id="token" rows="3" spellcheck="false" autocomplete="off"></textarea>
<button id="save" type="button">Use token</button> <button id="forget" type="button">Forget token</button></section>
<p id="message" role="status"></p>
<section id="content"></section>
</main>
<script src="/approvals-assets/app.js"></script></body></html>
`;

const CSS = `body{font-family:system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:.6rem 1.2rem}h1{font-size:1.2rem;margin:0}
main{max-width:60rem;margin:1rem auto;padding:0 1rem}textarea{width:100%;font-family:monospace}
table{border-collapse:collapse;width:100%;background:#fff}td,th{border-bottom:1px solid #dde;padding:.35rem .5rem;text-align:left;vertical-align:top}
pre{background:#fff;border:1px solid #dde;padding:.6rem;white-space:pre-wrap;word-break:break-all}
.Pending{color:#a66b00}.Approved{color:#16783a}.Denied,.Expired,.Cancelled{color:#a3262a}
button{margin:.3rem .3rem .3rem 0;padding:.35rem .9rem}#message{font-weight:600}
`;

const JS = `"use strict";
(function () {
  var KEY = "drawbridge.approvals.token";
  var $ = function (id) { return document.getElementById(id); };
  var token = function () { return sessionStorage.getItem(KEY) || ""; };
  // Request data is the requester's text: bidi overrides, \\r and invisible characters would make it
  // read as something else, so they are shown as escapes (gateway/approvals/visible.ts; the same
  // predicate, crds/text.ts INVISIBLE, is written in here).
  var HIDDEN = new RegExp(${JSON.stringify(INVISIBLE.source)}, "gu");
  function shown(s) { return String(s).replace(HIDDEN, function (ch) { if (ch === "\\n" || ch === "\\t") return ch; if (ch === "\\r") return "\\\\r"; var c = ch.codePointAt(0); return c <= 0xff ? "\\\\x" + ("0" + c.toString(16)).slice(-2) : c <= 0xffff ? "\\\\u" + ("000" + c.toString(16)).slice(-4) : "\\\\u{" + c.toString(16) + "}"; }); }
  function el(tag, text, cls) { var e = document.createElement(tag); if (text != null) e.textContent = shown(text); if (cls) e.className = cls; return e; }
  function say(text) { $("message").textContent = shown(text); }
  function api(method, path, body) {
    return fetch(path, { method: method, headers: Object.assign({ authorization: "Bearer " + token() }, body ? { "content-type": "application/json" } : {}), body: body ? JSON.stringify(body) : undefined })
      .then(function (res) { return res.json().then(function (j) { if (!res.ok) { var e = (j && j.error) || {}; throw new Error((e.message || "request failed") + " (HTTP " + res.status + ", " + (e.code || "error") + ")"); } return j; }); });
  }
  function subjects(list) { return list.map(function (a) { return a.kind === "ServiceAccount" ? "serviceaccount:" + a.namespace + "/" + a.name : a.kind === "Claims" ? "claims(" + a.issuer + ")" : a.kind.toLowerCase() + ":" + a.name; }).join(", "); }
  // A grant's shared credential names its first subject; any subject of the grant may have sent it.
  function who(r) { var w = r.requester.serviceAccount ? "serviceaccount:" + r.requester.serviceAccount.namespace + "/" + r.requester.serviceAccount.name : "user:" + r.requester.username; return r.requester.sharedBy ? w + " (the grant's shared credential: any of " + subjects(r.requester.sharedBy) + ")" : w; }
  function approvers(r) { return subjects(r.approvers); }
  function row(t, k, v, cls) { var tr = el("tr"); tr.appendChild(el("th", k)); tr.appendChild(el("td", v, cls)); t.appendChild(tr); }
  function renderOne(r, preselect) {
    var c = $("content"); c.replaceChildren();
    c.appendChild(el("h2", "Approval " + r.id));
    var t = el("table");
    row(t, "Phase", r.phase + (r.reason ? " (" + r.reason + ")" : ""), r.phase);
    row(t, "Requester", who(r)); row(t, "Connection", r.connection + " (" + r.protocol + "), grant " + r.grant);
    row(t, "Rule", r.rule); row(t, "Approvers", approvers(r) + " — " + r.minApprovals + " needed");
    row(t, "Expires", r.expiresAt);
    r.decisions.forEach(function (d) { row(t, "Decision", d.at + " " + d.decision + " by " + d.by + (d.comment ? ": " + d.comment : "")); });
    c.appendChild(t); c.appendChild(el("h3", "Command (" + r.command.length + " characters, " + r.command.split("\\n").length + " lines: read to the end)")); c.appendChild(el("pre", r.command));
    if (r.phase !== "Pending") return;
    var comment = el("textarea"); comment.rows = 2; comment.placeholder = "Comment (optional)"; c.appendChild(comment);
    ["approve", "deny"].forEach(function (d) {
      var b = el("button", d === "approve" ? "Approve" : "Deny"); b.type = "button";
      if (preselect === d) b.autofocus = true;
      b.addEventListener("click", function () {
        if (!confirm((d === "approve" ? "Approve " : "Deny ") + r.id + "?")) return;
        api("POST", "/api/v1/approvals/" + encodeURIComponent(r.id) + "/" + d, comment.value ? { comment: comment.value } : {})
          .then(function (n) { say(n.id + ": " + (n.phase === "Pending" ? "your decision is recorded; still Pending" : "now " + n.phase)); renderOne(n); })
          .catch(function (e) { say(e.message); });
      });
      c.appendChild(b);
    });
    if (preselect) say("Review the command, then press " + (preselect === "approve" ? "Approve" : "Deny") + ".");
  }
  function renderList(items) {
    var c = $("content"); c.replaceChildren(); c.appendChild(el("h2", "Pending requests"));
    if (!items.length) { c.appendChild(el("p", "Nothing pending for you.")); return; }
    var t = el("table"); var h = el("tr"); ["ID", "Requester", "Connection", "Expires", "Command"].forEach(function (x) { h.appendChild(el("th", x)); }); t.appendChild(h);
    items.forEach(function (r) {
      var tr = el("tr"); var td = el("td"); var a = el("a", r.id); a.href = "/approvals/" + encodeURIComponent(r.id); td.appendChild(a); tr.appendChild(td);
      tr.appendChild(el("td", who(r))); tr.appendChild(el("td", r.connection)); tr.appendChild(el("td", r.expiresAt)); tr.appendChild(el("td", r.command.slice(0, 120)));
      t.appendChild(tr);
    });
    c.appendChild(t);
  }
  function load() {
    if (!token()) { say("Paste your token to continue."); return; }
    var m = /^\\/approvals\\/([a-z0-9-]+)$/.exec(location.pathname);
    var decision = new URLSearchParams(location.search).get("decision");
    if (m) api("GET", "/api/v1/approvals/" + m[1]).then(function (r) { say(""); renderOne(r, decision); }).catch(function (e) { say(e.message); });
    else api("GET", "/api/v1/approvals?phase=Pending").then(function (j) { say(""); renderList(j.items); }).catch(function (e) { say(e.message); });
  }
  $("save").addEventListener("click", function () { sessionStorage.setItem(KEY, $("token").value.trim()); $("token").value = ""; load(); });
  $("forget").addEventListener("click", function () { sessionStorage.removeItem(KEY); $("content").replaceChildren(); say("Token forgotten."); });
  load();
})();
`;

export function registerApprovalPages(app: FastifyInstance): void {
	const page = async (_req: unknown, reply: import("fastify").FastifyReply) =>
		reply
			.header("content-security-policy", CSP)
			.header("x-content-type-options", "nosniff")
			.header("referrer-policy", "no-referrer")
			.header("cache-control", "no-store")
			.type("text/html; charset=utf-8")
			.send(HTML);
	app.get("/approvals", page);
	app.get("/approvals/:id", page);
	app.get("/approvals-assets/app.js", async (_req, reply) => reply.header("x-content-type-options", "nosniff").type("text/javascript; charset=utf-8").send(JS));
	app.get("/approvals-assets/app.css", async (_req, reply) => reply.header("x-content-type-options", "nosniff").type("text/css; charset=utf-8").send(CSS));
}
