// Drives the web console in headless Chromium (Debian's, through playwright-core): signs in,
// creates a subscription (after the API refuses a bad one), sees a delivery arrive in the
// live tail, opens its request and response, redelivers it, pauses and resumes, filters the
// delivery log, shows a listener's HTML and a user's markup as text, and deletes two
// subscriptions together. Screenshots of each main page go to SCREENSHOT_DIR.
//
// Usage: node console_e2e.mjs BASE_URL TOKEN OWNER CALLBACK_URL HTML_CALLBACK_URL SCREENSHOT_DIR
// Prints a JSON report; exits non-zero (with the step) when a step fails.
import { chromium } from "playwright-core";

const [base, token, owner, callback, htmlCallback, shots] = process.argv.slice(2);
const report = { steps: [], dialogs: [], console_errors: [], csp_violations: 0 };
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";

// An RPC as another client would make it (the test's producer, not the console).
async function rpc(method, body) {
  const response = await fetch(`${base}/${method}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(`${method}: ${JSON.stringify(answer)}`);
  return answer;
}

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
let step = "start";
try {
  // Not UTC, so that a time typed as UTC but read as local time would show.
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 },
    timezoneId: "Asia/Kolkata" });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  page.on("dialog", async (dialog) => {
    report.dialogs.push(`${dialog.type()}: ${dialog.message()}`);
    // The console's confirmations are accepted; anything else (an alert) is a failure.
    if (dialog.type() === "confirm") await dialog.accept();
    else await dialog.dismiss();
  });
  page.on("console", (message) => {
    if (message.type() === "error") report.console_errors.push(message.text());
  });
  const done = (name) => report.steps.push(name);
  // Marks what `selector` matches now, so that a wait after a navigation finds only what the
  // next render drew (a hash navigation keeps the old page on screen until then).
  const stale = (selector) => page.evaluate((s) => {
    for (const node of document.querySelectorAll(s)) node.setAttribute("data-stale", "");
  }, selector);
  const shot = (name) => page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });

  step = "headers";
  const index = await fetch(`${base}/console/`);
  report.csp = index.headers.get("content-security-policy");
  report.nosniff = index.headers.get("x-content-type-options");
  done(step);

  step = "sign in";
  await page.goto(`${base}/`);
  report.redirected_to = new URL(page.url()).pathname;
  await page.waitForSelector("#signin");
  await shot("signin");
  await page.fill("#token", "whk_not-a-token");
  await page.click("#signin button[type=submit]");
  report.bad_token_error = await page.textContent("#signin .error");
  await page.fill("#token", token);
  await page.click("#signin button[type=submit]");
  await page.waitForSelector("#subscriptions");
  report.who = await page.textContent("#who");
  report.token_in_url = page.url().includes(token);
  report.cookies = (await context.cookies()).length;
  done(step);

  step = "create, refused then accepted";
  await page.click("#new-subscription");
  await page.waitForSelector("#subscription-form");
  await page.fill("#f-url", "ftp://example.com/hook");
  await page.fill("#f-name", "console-hook");
  await page.click("#save");
  await page.waitForSelector("#form-error .error");
  report.create_error = await page.textContent("#form-error .error");
  await shot("subscription-form");
  await page.fill("#f-url", callback);
  await page.check("input[name=eventType][value='artifact.pushed']");
  await page.click("#save");
  await page.waitForSelector("#subscriptions tr.subscription");
  report.flash_after_create = await page.textContent("#flash");
  const row = page.locator("#subscriptions tr.subscription", { hasText: "console-hook" });
  const id = await row.getAttribute("data-id");
  report.created_id = id;
  report.created_events = await row.locator("td").nth(5).textContent();
  done(step);

  step = "live tail";
  await page.goto(`${base}/console/#/tail?owner=${encodeURIComponent(owner)}`);
  await page.waitForFunction(() =>
    document.getElementById("tail-status")?.textContent.startsWith("following"));
  const ping = await rpc("webhookd.v1.SubscriptionService/PingSubscription", { subscriptionId: id });
  const tailRow = page.locator(`#tail tr.attempt[data-delivery='${ping.deliveryId}']`);
  await tailRow.waitFor();
  report.tail_row = await tailRow.textContent();
  await shot("tail");
  done(step);

  step = "delivery: request and response";
  await tailRow.locator(`a[href='#/delivery/${ping.deliveryId}']`).click();
  await page.waitForSelector("details.attempt");
  report.request_body = await page.textContent("details.attempt .request-body");
  report.request_headers = await page.textContent("details.attempt .request table.headers");
  report.response_headers = await page.textContent("details.attempt .response table.headers");
  await shot("delivery");
  done(step);

  step = "redeliver";
  await page.click("#redeliver");
  await page.waitForFunction(() => document.getElementById("flash").textContent.includes("queued again"));
  for (let i = 0; i < 50; i++) {
    await page.reload();
    await page.waitForSelector("#delivery");
    if ((await page.locator("details.attempt").count()) >= 2) break;
    await page.waitForTimeout(200);
  }
  report.attempts_after_redeliver = await page.locator("details.attempt").count();
  done(step);

  step = "a listener's HTML and a user's markup shown as text";
  const html = await rpc("webhookd.v1.SubscriptionService/CreateSubscription", {
    subscription: { owner, family: "EVENT_FAMILY_REGISTRY", format: "FORMAT_JSON",
      url: htmlCallback, name: "<img src=x onerror=alert(3)>" },
  });
  const htmlId = html.subscription.subscriptionId;
  const htmlPing = await rpc("webhookd.v1.SubscriptionService/PingSubscription", { subscriptionId: htmlId });
  for (let i = 0; i < 100; i++) {
    const got = await rpc("webhookd.v1.DeliveryService/GetDelivery", { deliveryId: htmlPing.deliveryId });
    if ((got.attempts || []).length) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  await stale("details.attempt .response-body");
  await page.goto(`${base}/console/#/delivery/${htmlPing.deliveryId}`);
  await page.waitForSelector("details.attempt .response-body:not([data-stale])");
  report.html_response_body = await page.textContent("details.attempt .response-body");
  report.scripts_in_main = await page.locator("main script, main img").count();
  await shot("delivery-html-response");
  await page.goto(`${base}/console/#/subscriptions?owner=${encodeURIComponent(owner)}`);
  await page.waitForSelector(`#subscriptions tr[data-id='${htmlId}']`);
  report.markup_name = await page.locator(`#subscriptions tr[data-id='${htmlId}'] td`).nth(1)
    .locator("a").textContent();
  report.images_in_table = await page.locator("#subscriptions img").count();
  done(step);

  step = "pause and resume";
  // The batchers write last responses and the hourly tallies about once a second: wait for
  // the attempts above to be written, so that the page drawn after resume shows them.
  for (let i = 0; ; i++) {
    const [s] = (await rpc("webhookd.v1.DeliveryService/GetDeliveryStats",
      { subscriptionIds: [id] })).stats;
    if ((s.hours || []).reduce((n, h) => n + Number(h.attempts), 0) >= 2) break;
    if (i === 100) throw new Error("the attempts' tallies were never written");
    await page.waitForTimeout(100);
  }
  const mine = page.locator(`#subscriptions tr[data-id='${id}']`);
  await mine.locator("button[data-action=pause]").click();
  await page.waitForFunction((rowId) => document.querySelector(`#subscriptions tr[data-id='${rowId}'] .state`)
    ?.textContent === "paused", id);
  report.paused_state = await mine.locator(".state").first().textContent();
  report.paused_reason = await mine.locator("td").nth(3).textContent();
  await shot("subscriptions");
  await mine.locator("button[data-action=resume]").click();
  await page.waitForFunction((rowId) => document.querySelector(`#subscriptions tr[data-id='${rowId}'] .state`)
    ?.textContent === "active", id);
  report.resumed_state = await mine.locator(".state").first().textContent();
  report.last_response = await mine.locator("td").nth(7).textContent();
  report.chart_bars = await mine.locator("svg.chart rect:not(.none)").count();
  done(step);

  step = "edit";
  await mine.locator("a", { hasText: "Edit" }).click();
  await page.waitForSelector("#subscription-form");
  report.edit_repository_disabled = await page.isDisabled("#f-repository");
  await page.fill("#f-name", "console-hook-renamed");
  await page.check("input[name=eventType][value='artifact.deleted']");
  await page.fill("#f-url", "ftp://example.com/hook");
  await page.click("#save");
  await page.waitForSelector("#form-error .error");
  report.edit_error = await page.textContent("#form-error .error");
  await page.fill("#f-url", callback);
  await page.click("#save");
  await page.waitForSelector(`#subscriptions tr[data-id='${id}']`);
  report.flash_after_edit = await page.textContent("#flash");
  report.edited_row_name = await mine.locator("td").nth(1).locator("a").textContent();
  const edited = (await rpc("webhookd.v1.SubscriptionService/GetSubscription",
    { subscriptionId: id })).subscription;
  report.edited = { name: edited.name, eventTypes: edited.eventTypes, url: edited.url };
  done(step);

  step = "delivery log filters";
  await mine.locator("td").nth(1).locator("a").click();
  await page.waitForSelector("#deliveries");
  report.log_rows = await page.locator("#deliveries tr.delivery").count();
  await page.selectOption("#d-state", "failed");
  await stale("#deliveries");
  await page.click("#delivery-filters button[type=submit]");
  await page.waitForFunction(() => location.hash.includes("state=failed"));
  await page.waitForSelector("#deliveries:not([data-stale])");
  report.failed_rows = await page.locator("#deliveries tr.delivery").count();
  await page.selectOption("#d-state", "delivered");
  await page.fill("#d-since", "2020-01-02T03:04");
  await stale("#deliveries");
  await page.click("#delivery-filters button[type=submit]");
  await page.waitForFunction(() => location.hash.includes("state=delivered"));
  await page.waitForSelector("#deliveries:not([data-stale]) tr.delivery");
  report.delivered_rows = await page.locator("#deliveries tr.delivery").count();
  report.since_in_hash = new URLSearchParams(await page.evaluate(() =>
    location.hash.split("?")[1])).get("since");
  report.since_shown = await page.inputValue("#d-since");
  await shot("deliveries");
  await page.fill("#recover-since", "2020-01-01T00:00");
  await page.click("#recover button[type=submit]");
  await page.waitForFunction(() => document.getElementById("flash").textContent.includes("queued again"));
  report.recover_flash = await page.textContent("#flash");
  done(step);

  step = "bulk delete";
  await page.goto(`${base}/console/#/subscriptions?owner=${encodeURIComponent(owner)}`);
  await page.waitForSelector("#subscriptions tr.subscription");
  for (const rowId of [id, htmlId]) {
    await page.check(`#subscriptions tr[data-id='${rowId}'] input.select`);
  }
  report.delete_label = await page.textContent("#delete-selected");
  await stale("#subscriptions");
  await page.click("#delete-selected");
  await page.waitForFunction(() => document.getElementById("flash").textContent.includes("Deleted"));
  await page.waitForSelector("#subscriptions:not([data-stale])");
  report.rows_after_delete = await page.locator("#subscriptions tr.subscription").count();
  report.left = (await rpc("webhookd.v1.SubscriptionService/ListSubscriptions", { owner }))
    .subscriptions?.length ?? 0;
  done(step);

  step = "sign out";
  await page.click("#signout");
  await page.waitForSelector("#signin");
  report.token_kept = await page.evaluate(() => sessionStorage.length);
  done(step);

  step = "a stored token refused after a reload";
  // (replaceState changes the hash without a hashchange: the reload is the first render.)
  await page.evaluate(() => {
    sessionStorage.setItem("webhookd-token", "whk_revoked");
    history.replaceState(null, "", "#/subscriptions");
  });
  await page.reload();
  await page.waitForFunction(() => document.getElementById("flash").textContent.includes("refused"));
  await page.waitForSelector("#signin");
  report.refused_flash = await page.textContent("#flash");
  report.refused_token_kept = await page.evaluate(() => sessionStorage.length);
  done(step);
} catch (e) {
  report.failed_step = step;
  report.error = String(e && e.stack || e);
} finally {
  await browser.close();
}
report.csp_violations = report.console_errors.filter((e) => e.includes("Content Security Policy")).length;
console.log(JSON.stringify(report));
process.exit(report.failed_step ? 1 : 0);
