// Drives webhookd's GitHub face with @octokit/rest, changing only the base URL: every
// repository-hook operation octokit.rest.repos offers, deliveries and redelivery included.
//
// Usage: node octokit_hooks.mjs BASE_URL TOKEN OWNER REPO CALLBACK_URL; prints a JSON report.
import { Octokit } from "@octokit/rest";

const [baseUrl, token, owner, repo, callback] = process.argv.slice(2);
const octokit = new Octokit({ baseUrl, auth: token });
const report = {};

const created = await octokit.rest.repos.createWebhook({
  owner,
  repo,
  config: { url: callback, content_type: "json", secret: "octokit-secret" },
  events: ["push"],
});
report.created_status = created.status;
const hook_id = created.data.id;
report.created_id_is_number = typeof hook_id === "number";

const second = await octokit.rest.repos.createWebhook({
  owner,
  repo,
  config: { url: `${callback}/2`, content_type: "form" },
});
const all = await octokit.paginate(octokit.rest.repos.listWebhooks, { owner, repo, per_page: 1 });
report.paginated = all.map((h) => h.id);
report.second_id = second.data.id;

const got = await octokit.rest.repos.getWebhook({ owner, repo, hook_id });
report.got_events = got.data.events;
const updated = await octokit.rest.repos.updateWebhook({ owner, repo, hook_id, add_events: ["issues"] });
report.updated_events = updated.data.events;
const config = await octokit.rest.repos.getWebhookConfigForRepo({ owner, repo, hook_id });
report.config_secret = config.data.secret;
const newConfig = await octokit.rest.repos.updateWebhookConfigForRepo({
  owner,
  repo,
  hook_id,
  insecure_ssl: "0",
  content_type: "json",
});
report.config_content_type = newConfig.data.content_type;
report.ping_status = (await octokit.rest.repos.pingWebhook({ owner, repo, hook_id })).status;
report.test_status = (await octokit.rest.repos.testPushWebhook({ owner, repo, hook_id })).status;

// The deliveries of the pings (recorded a moment after they are answered).
let deliveries = [];
for (let i = 0; i < 100 && deliveries.length < 2; i++) {
  deliveries = (await octokit.rest.repos.listWebhookDeliveries({ owner, repo, hook_id })).data;
  if (deliveries.length < 2) await new Promise((r) => setTimeout(r, 100));
}
report.deliveries = deliveries.map((d) => d.event);
const delivery_id = deliveries[0].id;
const delivery = await octokit.rest.repos.getWebhookDelivery({ owner, repo, hook_id, delivery_id });
report.delivery_guid = delivery.data.guid;
report.delivery_request_event = delivery.data.request.headers["x-github-event"];
const redelivered = await octokit.rest.repos.redeliverWebhookDelivery({ owner, repo, hook_id, delivery_id });
report.redeliver_status = redelivered.status;

// GitHub's errors reach octokit as RequestErrors with GitHub's status and body.
try {
  await octokit.rest.repos.createWebhook({ owner, repo, config: { url: callback, content_type: "json" }, events: ["push"] });
  report.duplicate = "accepted";
} catch (e) {
  report.duplicate = `${e.status} ${e.response.data.errors[0].message}`;
}

await octokit.rest.repos.deleteWebhook({ owner, repo, hook_id });
await octokit.rest.repos.deleteWebhook({ owner, repo, hook_id: second.data.id });
try {
  await octokit.rest.repos.getWebhook({ owner, repo, hook_id });
  report.deleted = false;
} catch (e) {
  report.deleted = e.status === 404;
}
console.log(JSON.stringify(report));
