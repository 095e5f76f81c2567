// Verifies a delivery's X-Hub-Signature-256 with @octokit/webhooks-methods, as a receiver
// built on octokit does. Usage: node verify_signature.mjs SECRET SIGNATURE < BODY; exits 0
// when it verifies, 1 when not.
import { verify } from "@octokit/webhooks-methods";
import { readFileSync } from "node:fs";

const [secret, signature] = process.argv.slice(2);
const body = readFileSync(0, "utf8");
process.exit((await verify(secret, body, signature)) ? 0 : 1);
