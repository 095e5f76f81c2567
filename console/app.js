// The webhookd console: a page of plain JavaScript (no build step) over the native API's
// Connect JSON RPCs, with the token the user signs in with. Everything shown is put in the
// page as text (textContent, setAttribute), never parsed as HTML; the token lives in this
// tab's sessionStorage and goes out only in the Authorization header.
"use strict";

const TOKEN_KEY = "webhookd-token";
const SUBSCRIPTIONS = "webhookd.v1.SubscriptionService";
const DELIVERIES = "webhookd.v1.DeliveryService";
const PAGE_SIZE = 50;
const TAIL_ROWS = 500;

// ---- The API -------------------------------------------------------------------------

class ApiError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function headers(contentType) {
  return {
    "Content-Type": contentType,
    "Connect-Protocol-Version": "1",
    Authorization: "Bearer " + token(),
  };
}

// One unary call; the answer, or an ApiError with the server's code and message.
async function rpc(service, method, body) {
  let response;
  try {
    response = await fetch("/" + service + "/" + method, {
      method: "POST",
      headers: headers("application/json"),
      body: JSON.stringify(body || {}),
      credentials: "omit",
      cache: "no-store",
    });
  } catch (e) {
    throw new ApiError("unavailable", "the server could not be reached: " + e.message);
  }
  const text = await response.text();
  let answer = {};
  try {
    answer = text ? JSON.parse(text) : {};
  } catch (e) {
    throw new ApiError("unknown", "the server answered " + response.status + ": " + text);
  }
  if (!response.ok) {
    if (answer.code === "unauthenticated" && token() && !signingIn) {
      signOut("Your token was refused (" + (answer.message || "unauthenticated") + ").");
    }
    throw new ApiError(answer.code || "unknown", answer.message || "HTTP " + response.status);
  }
  return answer;
}

// A server-streaming call (Connect's enveloped JSON): `onMessage` gets each message until
// the stream ends or `signal` aborts it. Resolves at the end; rejects with the stream's error.
async function stream(service, method, body, onMessage, signal) {
  const json = new TextEncoder().encode(JSON.stringify(body));
  const frame = new Uint8Array(5 + json.length);
  new DataView(frame.buffer).setUint32(1, json.length);
  frame.set(json, 5);
  const response = await fetch("/" + service + "/" + method, {
    method: "POST",
    headers: headers("application/connect+json"),
    body: frame,
    credentials: "omit",
    cache: "no-store",
    signal,
  });
  if (!response.ok) {
    const answer = await response.json().catch(() => ({}));
    if (answer.code === "unauthenticated" && token()) {
      signOut("Your token was refused (" + (answer.message || "unauthenticated") + ").");
    }
    throw new ApiError(answer.code || "unknown", answer.message || "HTTP " + response.status);
  }
  const reader = response.body.getReader();
  let buffer = new Uint8Array(0);
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new ApiError("unavailable", "the stream ended without an end message");
    const joined = new Uint8Array(buffer.length + value.length);
    joined.set(buffer);
    joined.set(value, buffer.length);
    buffer = joined;
    while (buffer.length >= 5) {
      const length = new DataView(buffer.buffer, buffer.byteOffset).getUint32(1);
      if (buffer.length < 5 + length) break;
      const flags = buffer[0];
      const message = JSON.parse(new TextDecoder().decode(buffer.subarray(5, 5 + length)));
      buffer = buffer.slice(5 + length);
      if (flags & 2) {
        if (message.error) {
          if (message.error.code === "unauthenticated") {
            signOut("Your token was refused (" + (message.error.message || "unauthenticated") + ").");
          }
          throw new ApiError(message.error.code, message.error.message);
        }
        return;
      }
      onMessage(message);
    }
  }
}

// ---- The page ------------------------------------------------------------------------

// An element with attributes and children; strings become text nodes (never HTML).
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) {
      node.addEventListener(name.slice(2), value);
    } else if (value === true) {
      node.setAttribute(name, "");
    } else {
      node.setAttribute(name, String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  append(node, children);
  return node;
}

// A page's renders may finish after the user moved on: each page shows what it built only
// while it is still the page asked for (see render).
let generation = 0;
function view() {
  const mine = generation;
  const show = (...children) => {
    if (mine === generation) main(...children);
  };
  show.left = () => mine !== generation;
  return show;
}

function main(...children) {
  const node = document.getElementById("main");
  node.replaceChildren(...children.flat().filter(Boolean));
  return node;
}

function flash(text, kind) {
  flashedAt = Date.now();
  const node = document.getElementById("flash");
  node.replaceChildren();
  if (text) node.append(el("div", { class: kind || "notice" }, text));
}

function errorBox(e) {
  return el("div", { class: "error", role: "alert" },
    (e.code ? e.code + ": " : "") + (e.message || String(e)));
}

function when(time) {
  if (!time) return "—";
  const date = new Date(time);
  return isNaN(date) ? time : date.toISOString().replace(".000Z", "Z").replace("T", " ");
}

function ms(duration) {
  if (!duration) return "—";
  return Math.round(parseFloat(duration) * 1000) + " ms";
}

function short(value, prefix) {
  return (value || "").replace(prefix, "").toLowerCase() || "—";
}

function bytesText(base64) {
  if (!base64) return "";
  const raw = atob(base64);
  const bytes = Uint8Array.from(raw, (c) => c.charCodeAt(0));
  return new TextDecoder("utf-8", { fatal: false }).decode(bytes);
}

function lines(text) {
  return text.split(/[\n,]/).map((s) => s.trim()).filter(Boolean);
}

// Route and query of the location's hash: "#/deliveries/ID?state=failed".
function route() {
  const hash = location.hash.replace(/^#/, "") || "/subscriptions";
  const [path, query] = hash.split("?");
  return { parts: path.split("/").filter(Boolean).map(decodeURIComponent),
           query: new URLSearchParams(query || "") };
}

function link(parts, query) {
  const path = "#/" + parts.map(encodeURIComponent).join("/");
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query || {})) if (v) q.set(k, v);
  const qs = q.toString();
  return qs ? path + "?" + qs : path;
}

function go(parts, query) {
  const target = link(parts, query);
  if (location.hash === target) render();
  else location.hash = target;
}

// ---- Sign-in ---------------------------------------------------------------------------

let scope = null; // ListOwners' answer for the token
let signingIn = false; // a token is being tried: its refusal is the sign-in form's to show
let current = null; // what the page on screen must stop when left (a tail)

function signOut(why) {
  sessionStorage.removeItem(TOKEN_KEY);
  scope = null;
  if (why) flash(why, "error");
  go(["signin"]);
}

function signInPage() {
  const show = view();
  const input = el("input", { type: "password", name: "token", id: "token", autocomplete: "off",
    required: true, size: 60, placeholder: "whk_…" });
  const problem = el("div");
  const form = el("form", { class: "card", id: "signin", onsubmit: async (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    signingIn = true;
    try {
      scope = await rpc(SUBSCRIPTIONS, "ListOwners", {});
      flash("");
      go(["subscriptions"]);
    } catch (e) {
      sessionStorage.removeItem(TOKEN_KEY);
      problem.replaceChildren(errorBox(e));
    } finally {
      signingIn = false;
    }
  } },
    el("label", { for: "token" }, "API token (from webhookd token create)", input),
    el("p", { class: "muted" }, "The token is kept in this tab only and sent to this server in " +
      "the Authorization header. You see and change only what it covers."),
    problem,
    el("div", {}, el("button", { class: "primary", type: "submit" }, "Sign in")));
  show(el("h1", {}, "Sign in"), form);
  input.focus();
}

async function ensureScope() {
  if (!scope) scope = await rpc(SUBSCRIPTIONS, "ListOwners", {});
  const who = document.getElementById("who");
  who.replaceChildren(
    scope.allOwners ? "Token covers every owner" :
      "Token covers " + (scope.owners || []).join(", "),
    el("button", { type: "button", id: "signout", onclick: () => signOut("Signed out.") },
      "Sign out"));
  return scope;
}

function ownerPicker(selected, onChange) {
  const owners = scope.owners || [];
  if (scope.allOwners) {
    const input = el("input", { type: "text", name: "owner", id: "owner", value: selected,
      list: "owners", placeholder: "owner" });
    input.addEventListener("change", () => onChange(input.value.trim()));
    return el("label", {}, "Owner", input,
      el("datalist", { id: "owners" }, owners.map((o) => el("option", { value: o }))));
  }
  const select = el("select", { name: "owner", id: "owner" },
    owners.map((o) => el("option", { value: o, selected: o === selected }, o)));
  select.addEventListener("change", () => onChange(select.value));
  return el("label", {}, "Owner", select);
}

function defaultOwner(query) {
  return query.get("owner") ?? (scope.owners || [])[0] ?? "";
}

// ---- Subscriptions ----------------------------------------------------------------------

function chart(stats) {
  const width = 144, height = 28, bar = width / 24;
  const hours = new Map((stats && stats.hours || []).map((h) => [new Date(h.startTime).getTime(), h]));
  const now = new Date();
  now.setUTCMinutes(0, 0, 0);
  const node = svg("svg", { class: "chart", width, height, viewBox: `0 0 ${width} ${height}`,
    role: "img" });
  let slowest = 1;
  for (const h of hours.values()) slowest = Math.max(slowest, parseFloat(h.meanDuration || "0"));
  const points = [];
  let attempts = 0, successes = 0;
  for (let i = 0; i < 24; i++) {
    const start = now.getTime() - (23 - i) * 3600e3;
    const h = hours.get(start);
    const x = i * bar;
    if (!h) {
      node.append(svg("rect", { x: x + 0.5, y: height - 2, width: bar - 1, height: 2, class: "none" }));
      continue;
    }
    const n = Number(h.attempts || 0), ok = Number(h.successes || 0);
    attempts += n; successes += ok;
    const rate = n ? ok / n : 0;
    const kind = rate >= 0.99 ? "ok" : rate >= 0.9 ? "warn" : "bad";
    const rect = svg("rect", { x: x + 0.5, y: height - Math.max(2, rate * height), width: bar - 1,
      height: Math.max(2, rate * height), class: kind });
    rect.append(svg("title", {}, `${when(new Date(start).toISOString())}: ${n} attempts, ` +
      `${Math.round(rate * 100)}% succeeded, mean ${ms(h.meanDuration)}, max ${ms(h.maxDuration)}`));
    node.append(rect);
    const mean = parseFloat(h.meanDuration || "0");
    points.push(`${x + bar / 2},${height - (mean / slowest) * (height - 2) - 1}`);
  }
  if (points.length > 1) node.append(svg("polyline", { points: points.join(" ") }));
  node.prepend(svg("title", {}, attempts ?
    `Last 24 h: ${attempts} attempts, ${Math.round((successes / attempts) * 100)}% succeeded ` +
    "(bars: success rate per hour; line: mean latency)" : "No attempts in the last 24 hours"));
  return el("div", {}, node, el("div", { class: "muted" }, attempts ?
    `${Math.round((successes / attempts) * 100)}% of ${attempts}` : "no attempts"));
}

function stateCell(s) {
  const state = short(s.state, "SUBSCRIPTION_STATE_");
  return el("td", {}, el("span", { class: "state " + state }, state),
    s.stateReason ? el("div", { class: "muted" }, s.stateReason) : null,
    s.failing ? el("div", { class: "muted" },
      `failing since ${when(s.failing.since)} (${Number(s.failing.failures || 0)} failures)`) : null);
}

async function act(label, call, after) {
  try {
    const answer = await call();
    flash(typeof after === "function" ? after(answer) : label);
    render();
  } catch (e) {
    flash((e.code ? e.code + ": " : "") + e.message, "error");
  }
}

function subscriptionActions(s) {
  const id = s.subscriptionId;
  const state = short(s.state, "SUBSCRIPTION_STATE_");
  const call = (method, body) => () => rpc(SUBSCRIPTIONS, method, body);
  const setState = (value, reason) => call("UpdateSubscription", {
    subscription: { subscriptionId: id, state: "SUBSCRIPTION_STATE_" + value, stateReason: reason },
    updateMask: "state" });
  const button = (text, onclick, cls) =>
    el("button", { type: "button", class: cls, "data-action": text.toLowerCase(), onclick }, text);
  return el("div", { class: "actions" },
    el("a", { href: link(["subscriptions", id, "edit"]) }, "Edit"),
    el("a", { href: link(["deliveries", id]) }, "Deliveries"),
    el("a", { href: link(["tail"], { owner: s.owner, subscription: id }) }, "Tail"),
    state === "disabled" ?
      button("Enable", () => act("Enabled.", setState("ACTIVE", ""))) :
      button("Disable", () => act("Disabled.", setState("DISABLED", "disabled in the console"))),
    state === "paused" ?
      button("Resume", () => act("Resumed: held deliveries go out, oldest first.",
        call("ResumeSubscription", { subscriptionId: id }))) :
      state === "active" ? button("Pause", () => act("Paused: deliveries are held.",
        call("PauseSubscription", { subscriptionId: id, reason: "paused in the console" }))) : null,
    button("Ping", () => act("", call("PingSubscription", { subscriptionId: id }),
      (a) => "Ping queued as delivery " + a.deliveryId + ".")),
    button("Rotate secret", () => {
      if (!confirm("Rotate the signing secret of " + (s.name || id) + "?")) return;
      act("", call("RotateSigningSecret", { webhookId: id }), (a) =>
        "New signing secret: " + a.secret + "\nThe previous one also signs until " +
        when(a.previousSecretExpireTime) + ".");
    }));
}

async function subscriptionsPage(query) {
  const show = view();
  await ensureScope();
  const owner = defaultOwner(query);
  const repository = query.get("repository") || "";
  const state = query.get("state") || "";
  const reload = (changes) => go(["subscriptions"], { owner, repository, state, ...changes });
  const repoInput = el("input", { type: "text", name: "repository", id: "repository",
    value: repository, placeholder: "all repositories" });
  repoInput.addEventListener("change", () => reload({ repository: repoInput.value.trim(), page: "" }));
  const stateSelect = el("select", { name: "state", id: "state-filter" },
    ["", "active", "paused", "disabled"].map((v) =>
      el("option", { value: v, selected: v === state }, v || "any state")));
  stateSelect.addEventListener("change", () => reload({ state: stateSelect.value, page: "" }));
  const toolbar = el("div", { class: "toolbar" },
    ownerPicker(owner, (o) => reload({ owner: o, repository: "", page: "" })),
    el("label", {}, "Repository", repoInput),
    el("label", {}, "State", stateSelect),
    el("a", { href: link(["subscriptions", "new"], { owner }) },
      el("button", { type: "button", class: "primary", id: "new-subscription" }, "New subscription")));
  show(el("h1", {}, "Subscriptions"), toolbar, el("p", { class: "muted" }, "Loading…"));
  if (!owner && !scope.allOwners) {
    show(el("h1", {}, "Subscriptions"), el("p", {}, "This token covers no owner."));
    return;
  }
  const body = { owner, repository, pageSize: PAGE_SIZE, pageToken: query.get("page") || "" };
  if (state) body.state = "SUBSCRIPTION_STATE_" + state.toUpperCase();
  let list, stats = new Map();
  try {
    list = await rpc(SUBSCRIPTIONS, "ListSubscriptions", body);
    const ids = (list.subscriptions || []).map((s) => s.subscriptionId);
    if (ids.length) {
      const answer = await rpc(DELIVERIES, "GetDeliveryStats", { subscriptionIds: ids })
        .catch((e) => { flash("The 24-hour charts could not be loaded: " + e.message, "error"); return {}; });
      for (const s of answer.stats || []) stats.set(s.subscriptionId, s);
    }
  } catch (e) {
    show(el("h1", {}, "Subscriptions"), toolbar, errorBox(e));
    return;
  }
  const subscriptions = list.subscriptions || [];
  const selected = new Set();
  const deleteButton = el("button", { type: "button", class: "danger", id: "delete-selected",
    disabled: true }, "Delete selected");
  const updateDelete = () => {
    deleteButton.disabled = selected.size === 0;
    deleteButton.textContent = selected.size ? `Delete selected (${selected.size})` : "Delete selected";
  };
  deleteButton.addEventListener("click", async () => {
    if (!confirm(`Delete ${selected.size} subscriptions with their deliveries?`)) return;
    const failures = [];
    for (const id of selected) {
      try {
        await rpc(SUBSCRIPTIONS, "DeleteSubscription", { subscriptionId: id });
      } catch (e) {
        failures.push(id + ": " + e.message);
      }
    }
    flash(failures.length ? "Not deleted:\n" + failures.join("\n") :
      `Deleted ${selected.size} subscriptions.`, failures.length ? "error" : "notice");
    render();
  });
  const all = el("input", { type: "checkbox", "aria-label": "select all" });
  const boxes = [];
  all.addEventListener("change", () => {
    for (const box of boxes) {
      box.checked = all.checked;
      box.dispatchEvent(new Event("change"));
    }
  });
  const rows = subscriptions.map((s) => {
    const box = el("input", { type: "checkbox", class: "select", "aria-label": "select " + (s.name || s.subscriptionId) });
    box.addEventListener("change", () => {
      if (box.checked) selected.add(s.subscriptionId); else selected.delete(s.subscriptionId);
      updateDelete();
    });
    boxes.push(box);
    const response = s.lastResponse || {};
    return el("tr", { class: "subscription", "data-id": s.subscriptionId },
      el("td", {}, box),
      el("td", {}, el("a", { href: link(["deliveries", s.subscriptionId]) }, s.name || "(unnamed)"),
        el("div", { class: "id" }, s.subscriptionId),
        el("div", { class: "muted" }, s.url)),
      el("td", {}, s.repository || el("span", { class: "muted" }, "all")),
      stateCell(s),
      el("td", {}, short(s.format, "FORMAT_"), el("div", { class: "muted" }, short(s.family, "EVENT_FAMILY_"))),
      el("td", {}, (s.eventTypes || []).length ? s.eventTypes.join(", ") : el("span", { class: "muted" }, "all")),
      el("td", {}, (s.lastTriggers || []).length ?
        s.lastTriggers.map((t) => el("div", {}, t.eventType + ": " + when(t.lastTriggerTime))) :
        el("span", { class: "muted" }, "never")),
      el("td", {}, response.time ? [
        el("span", { class: "state " + (response.status === "active" ? "delivered" : "failed") },
          response.code ? String(response.code) : "no answer"),
        " ", response.message || "", el("div", { class: "muted" }, when(response.time))] :
        el("span", { class: "muted" }, "unused")),
      el("td", {}, chart(stats.get(s.subscriptionId))),
      el("td", {}, subscriptionActions(s)));
  });
  const table = el("table", { id: "subscriptions" },
    el("thead", {}, el("tr", {}, el("th", {}, all), ["Subscription", "Repository", "State",
      "Format", "Event types", "Last triggered", "Last response", "24 h", ""].map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.length ? rows :
      el("tr", {}, el("td", { colspan: 10, class: "muted" }, "No subscriptions here yet."))));
  const pager = el("div", { class: "pager" },
    query.get("page") ? el("a", { href: link(["subscriptions"], { owner, repository, state }) }, "First page") : null,
    list.nextPageToken ? el("a", { id: "next-page",
      href: link(["subscriptions"], { owner, repository, state, page: list.nextPageToken }) }, "Next page") : null);
  show(el("h1", {}, "Subscriptions"), toolbar, el("div", { class: "toolbar" }, deleteButton), table, pager);
}

// ---- Create and edit ---------------------------------------------------------------------

async function subscriptionForm(id, query) {
  const show = view();
  await ensureScope();
  let existing = null;
  const kinds = await rpc(SUBSCRIPTIONS, "ListEventTypes", {});
  if (id) existing = (await rpc(SUBSCRIPTIONS, "GetSubscription", { subscriptionId: id })).subscription;
  const s = existing || { owner: defaultOwner(query), family: "EVENT_FAMILY_REGISTRY" };
  const families = kinds.families || [];
  const field = (label, input) => el("label", {}, label, input);
  const text = (name, value, attrs) => el("input", { type: "text", name, id: "f-" + name,
    value: value || "", ...attrs });
  const area = (name, values, placeholder) => {
    const node = el("textarea", { name, id: "f-" + name, placeholder });
    node.value = (values || []).join("\n");
    return node;
  };
  const check = (name, label, value) => el("label", { class: "check" },
    el("input", { type: "checkbox", name, id: "f-" + name, checked: !!value }), label);
  const inputs = {
    owner: text("owner", s.owner, { required: true, disabled: !!existing }),
    repository: text("repository", s.repository, { placeholder: "every repository",
      disabled: !!existing }),
    name: text("name", s.name),
    description: text("description", s.description),
    url: el("input", { type: "url", name: "url", id: "f-url", value: s.url || "", required: true,
      size: 60, placeholder: "https://example.com/hooks" }),
    family: el("select", { name: "family", id: "f-family", disabled: !!existing },
      families.map((f) => el("option", { value: f.family, selected: f.family === s.family },
        short(f.family, "EVENT_FAMILY_")))),
    format: el("select", { name: "format", id: "f-format" }),
    authHeader: el("input", { type: "password", name: "authHeader", id: "f-authHeader",
      autocomplete: "off", placeholder: s.hasAuthHeader ? "set (leave empty to keep)" : "none" }),
    repositoryFilters: area("repositoryFilters", s.repositoryFilters, "one RE2 expression per line"),
    tagFilters: area("tagFilters", s.tagFilters, "one RE2 expression per line"),
    headers: area("headers", (s.headers || []).map((h) => h.name + ": " + h.value), "Name: value, one per line"),
  };
  const types = el("fieldset", { id: "f-event-types" });
  const otherTypes = text("otherTypes", "", { placeholder: "other event names, comma separated" });
  const fillFamily = () => {
    const family = families.find((f) => f.family === inputs.family.value) || {};
    const chosen = new Set(s.eventTypes || []);
    const known = new Set((family.eventTypes || []).map((t) => t.name));
    types.replaceChildren();
    append(types, [el("legend", {}, "Event types (none checked: all)"),
      (family.eventTypes || []).map((t) => el("label", { class: "check", title: t.description },
        el("input", { type: "checkbox", name: "eventType", value: t.name, checked: chosen.has(t.name) }),
        t.name)),
      family.open ? otherTypes : null]);
    otherTypes.value = [...chosen].filter((t) => !known.has(t)).join(", ");
    inputs.format.replaceChildren(...(family.formats || []).map((f) =>
      el("option", { value: f, selected: f === s.format }, short(f, "FORMAT_"))));
  };
  inputs.family.addEventListener("change", fillFamily);
  fillFamily();
  const flags = [check("skipTlsVerify", "Do not verify the listener's TLS certificate", s.skipTlsVerify),
    check("omitStandardHeaders", "Omit the Standard Webhooks headers", s.omitStandardHeaders),
    check("noRetries", "Attempt each delivery once (no retries)", s.noRetries)];
  const problem = el("div", { id: "form-error" });
  const form = el("form", { class: "card", id: "subscription-form", novalidate: true },
    field("Owner", inputs.owner), field("Repository", inputs.repository),
    field("Name", inputs.name), field("Description", inputs.description),
    field("URL", inputs.url), field("Event family", inputs.family), types,
    field("Format", inputs.format), field("Authorization header", inputs.authHeader),
    field("Repository filters", inputs.repositoryFilters), field("Tag filters", inputs.tagFilters),
    field("Custom headers", inputs.headers), flags, problem,
    el("div", { class: "actions" }, el("button", { class: "primary", type: "submit", id: "save" },
      existing ? "Save" : "Create"),
    el("a", { href: link(["subscriptions"], { owner: s.owner }) }, "Cancel")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const eventTypes = [...types.querySelectorAll("input[name=eventType]:checked")].map((b) => b.value)
      .concat(lines(otherTypes.value));
    const subscription = {
      subscriptionId: existing ? existing.subscriptionId : undefined,
      owner: inputs.owner.value.trim(),
      repository: inputs.repository.value.trim(),
      name: inputs.name.value.trim(),
      description: inputs.description.value,
      url: inputs.url.value.trim(),
      family: inputs.family.value,
      format: inputs.format.value,
      eventTypes,
      repositoryFilters: lines(inputs.repositoryFilters.value.replaceAll(",", "\n")),
      tagFilters: lines(inputs.tagFilters.value.replaceAll(",", "\n")),
      headers: inputs.headers.value.split("\n").map((l) => l.trim()).filter(Boolean).map((l) => {
        const at = l.indexOf(":");
        return at < 0 ? { name: l, value: "" } : { name: l.slice(0, at).trim(), value: l.slice(at + 1).trim() };
      }),
      skipTlsVerify: form.querySelector("#f-skipTlsVerify").checked,
      omitStandardHeaders: form.querySelector("#f-omitStandardHeaders").checked,
      noRetries: form.querySelector("#f-noRetries").checked,
    };
    const auth = inputs.authHeader.value;
    if (auth) subscription.authHeader = auth;
    try {
      if (existing) {
        // The fields changed, alone (a BSR or Harbor subscription refuses some; a format
        // named resets its options), by their JSON names, as a JSON FieldMask wants them.
        const mask = changedFields(existing, subscription);
        if (auth) mask.push("authHeader");
        if (!mask.length) {
          flash("Nothing changed.");
        } else {
          await rpc(SUBSCRIPTIONS, "UpdateSubscription", { subscription, updateMask: mask.join(",") });
          flash("Saved.");
        }
      } else {
        const created = await rpc(SUBSCRIPTIONS, "CreateSubscription", { subscription });
        flash("Created " + created.subscription.subscriptionId + ". Its signing secret: " +
          created.signingSecret + " (also readable with GetSigningSecret).");
      }
      go(["subscriptions"], { owner: subscription.owner || s.owner });
    } catch (e) {
      problem.replaceChildren(errorBox(e));
    }
  });
  show(el("h1", {}, existing ? "Edit " + (existing.name || existing.subscriptionId) : "New subscription"), form);
}

// The fields of the edit form whose value differs from the subscription's.
function changedFields(before, after) {
  const list = (v) => v || [], text = (v) => v || "";
  const normal = {
    eventTypes: (v) => [...list(v)].sort(), repositoryFilters: list, tagFilters: list,
    headers: (v) => list(v).map((h) => [h.name, h.value || ""]),
    url: text, format: text, name: text, description: text,
    skipTlsVerify: Boolean, omitStandardHeaders: Boolean, noRetries: Boolean,
  };
  return Object.keys(normal).filter((field) =>
    JSON.stringify(normal[field](before[field])) !== JSON.stringify(normal[field](after[field])));
}

// ---- Deliveries --------------------------------------------------------------------------

// A datetime-local field's value ("2026-12-03T10:00", seconds optional), read as UTC as its
// label says; "" when empty or not a time.
function isoFromLocal(value) {
  const date = value ? new Date(value + (value.length === 16 ? ":00Z" : "Z")) : null;
  return date && !isNaN(date) ? date.toISOString() : "";
}

async function deliveriesPage(id, query) {
  const show = view();
  await ensureScope();
  const filters = { state: query.get("state") || "", eventType: query.get("eventType") || "",
    since: query.get("since") || "", until: query.get("until") || "" };
  const subscription = (await rpc(SUBSCRIPTIONS, "GetSubscription", { subscriptionId: id })
    .catch((e) => { show(errorBox(e)); throw e; })).subscription;
  const state = el("select", { name: "state", id: "d-state" }, ["", "pending", "delivered", "failed"]
    .map((v) => el("option", { value: v, selected: v === filters.state }, v || "any state")));
  const eventType = el("input", { type: "text", name: "eventType", id: "d-event-type",
    value: filters.eventType, placeholder: "any event type" });
  const local = (iso) => {
    const date = iso ? new Date(iso) : null;
    return date && !isNaN(date) ? date.toISOString().slice(0, 16) : "";
  };
  const since = el("input", { type: "datetime-local", name: "since", id: "d-since", value: local(filters.since) });
  const until = el("input", { type: "datetime-local", name: "until", id: "d-until", value: local(filters.until) });
  const filterForm = el("form", { class: "toolbar", id: "delivery-filters", onsubmit: (e) => {
    e.preventDefault();
    go(["deliveries", id], { state: state.value, eventType: eventType.value.trim(),
      since: isoFromLocal(since.value), until: isoFromLocal(until.value) });
  } }, el("label", {}, "State", state), el("label", {}, "Event type", eventType),
    el("label", {}, "Queued since (UTC)", since), el("label", {}, "Until (UTC)", until),
    el("button", { type: "submit" }, "Filter"));
  const recoverSince = el("input", { type: "datetime-local", name: "recoverSince", id: "recover-since", required: true });
  const recoverForm = el("form", { class: "toolbar", id: "recover", onsubmit: (e) => {
    e.preventDefault();
    act("", () => rpc(DELIVERIES, "RecoverDeliveries", { subscriptionId: id,
      since: isoFromLocal(recoverSince.value) }), (a) => (a.queued || 0) + " failed deliveries queued again.");
  } }, el("label", {}, "Recover every failure queued since (UTC)", recoverSince),
    el("button", { type: "submit" }, "Recover"));
  const body = { webhookId: id, pageSize: PAGE_SIZE, eventType: filters.eventType,
    pageToken: query.get("page") || "" };
  if (filters.state) body.state = "DELIVERY_STATE_" + filters.state.toUpperCase();
  if (filters.since) body.since = filters.since;
  if (filters.until) body.until = filters.until;
  const heading = el("h1", {}, "Deliveries of " + (subscription.name || subscription.subscriptionId));
  const links = el("p", {}, el("a", { href: link(["subscriptions"], { owner: subscription.owner }) }, "← Subscriptions"),
    " · ", el("a", { href: link(["tail"], { owner: subscription.owner, subscription: id }) }, "Live tail"));
  let list;
  try {
    list = await rpc(DELIVERIES, "ListDeliveries", body);
  } catch (e) {
    show(heading, links, filterForm, errorBox(e));
    return;
  }
  const rows = (list.deliveries || []).map((d) => el("tr", { class: "delivery", "data-id": d.deliveryId },
    el("td", {}, el("a", { href: link(["delivery", d.deliveryId]) }, el("span", { class: "id" }, d.deliveryId))),
    el("td", {}, el("span", { class: "state " + short(d.state, "DELIVERY_STATE_") }, short(d.state, "DELIVERY_STATE_"))),
    el("td", {}, d.eventType),
    el("td", { class: "num" }, String(d.attemptCount || 0)),
    el("td", { class: "num" }, d.lastHttpStatus ? String(d.lastHttpStatus) : "—"),
    el("td", {}, when(d.createTime)),
    el("td", {}, when(d.lastAttemptTime)),
    el("td", {}, d.nextAttemptTime ? when(d.nextAttemptTime) : "—")));
  const table = el("table", { id: "deliveries" },
    el("thead", {}, el("tr", {}, ["Delivery", "State", "Event type", "Attempts", "Last status",
      "Queued", "Last attempt", "Next attempt"].map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 8, class: "muted" }, "No deliveries match."))));
  const pager = el("div", { class: "pager" }, list.nextPageToken ?
    el("a", { id: "next-page", href: link(["deliveries", id], { ...filters, page: list.nextPageToken }) }, "Older") : null);
  show(heading, links, filterForm, table, pager, el("h2", {}, "Recover"), recoverForm);
}

function headerTable(list) {
  return el("table", { class: "headers" }, el("tbody", {}, (list || []).map((h) =>
    el("tr", {}, el("th", {}, h.name), el("td", {}, el("code", {}, h.value))))));
}

async function deliveryPage(id) {
  const show = view();
  await ensureScope();
  let answer;
  try {
    answer = await rpc(DELIVERIES, "GetDelivery", { deliveryId: id });
  } catch (e) {
    show(el("h1", {}, "Delivery"), errorBox(e));
    return;
  }
  const d = answer.delivery;
  const redeliver = el("button", { type: "button", class: "primary", id: "redeliver", onclick: () =>
    act("", () => rpc(DELIVERIES, "Redeliver", { deliveryId: id }), () => "Delivery " + id +
      " queued again: it is attempted now, with the whole retry schedule ahead of it.") }, "Redeliver");
  const attempts = (answer.attempts || []).map((a) => el("details", { class: "attempt", open: true },
    el("summary", {}, `Attempt ${a.number} at ${when(a.startTime)}: ` +
      (a.httpStatus ? "HTTP " + a.httpStatus : "no answer (" + (a.error || "unknown") + ")") +
      ` in ${ms(a.duration)}`),
    el("div", { class: "columns" },
      el("section", { class: "request" }, el("h2", {}, "Request"),
        el("div", { class: "muted" }, `${a.requestBodySize || 0} bytes`),
        headerTable(a.requestHeaders), el("pre", { class: "request-body" }, bytesText(a.requestBody))),
      el("section", { class: "response" }, el("h2", {}, "Response"),
        a.connectCode ? el("div", {}, "Connect code: " + a.connectCode) : null,
        headerTable(a.responseHeaders), el("pre", { class: "response-body" }, bytesText(a.responseBody))))));
  show(el("h1", {}, "Delivery " + id),
    el("p", {}, el("a", { href: link(["deliveries", d.webhookId]) }, "← Deliveries of its subscription")),
    el("table", { id: "delivery" }, el("tbody", {},
      [["State", el("span", { class: "state " + short(d.state, "DELIVERY_STATE_") }, short(d.state, "DELIVERY_STATE_"))],
        ["Event", d.eventId + (d.eventType ? " (" + d.eventType + ")" : "")], ["Attempts", String(d.attemptCount || 0)],
        ["Queued", when(d.createTime)], ["Next attempt", d.nextAttemptTime ? when(d.nextAttemptTime) : "—"]]
        .map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v))))),
    el("div", { class: "toolbar" }, redeliver),
    attempts.length ? attempts : el("p", { class: "muted" }, "Not attempted yet."),
    answer.nextPageToken ? el("p", { class: "muted" }, "Later attempts: see webhookd deliveries get.") : null);
}

// ---- Live tail ---------------------------------------------------------------------------

async function tailPage(query) {
  const show = view();
  await ensureScope();
  if (show.left()) return; // left while signing in: open nothing
  const owner = defaultOwner(query);
  const subscription = query.get("subscription") || "";
  const subInput = el("input", { type: "text", name: "subscription", id: "t-subscription",
    value: subscription, placeholder: "every subscription", size: 38 });
  subInput.addEventListener("change", () => go(["tail"], { owner, subscription: subInput.value.trim() }));
  const status = el("span", { id: "tail-status", class: "muted" }, "connecting…");
  const tbody = el("tbody", {});
  const controller = new AbortController();
  current = () => controller.abort();
  const stop = el("button", { type: "button", id: "tail-stop", onclick: () => {
    controller.abort();
    status.textContent = "stopped";
  } }, "Stop");
  const add = (row) => {
    tbody.prepend(row);
    while (tbody.children.length > TAIL_ROWS) tbody.lastChild.remove();
  };
  show(el("h1", {}, "Live tail"),
    el("div", { class: "toolbar" }, ownerPicker(owner, (o) => go(["tail"], { owner: o })),
      el("label", {}, "Subscription", subInput), stop, status),
    el("p", { class: "muted" }, "Attempts appear as they are recorded, by any webhookd process; the " +
      `newest ${TAIL_ROWS} are kept here.`),
    el("table", { id: "tail" }, el("thead", {}, el("tr", {}, ["Time", "Subscription", "Delivery",
      "Event type", "Attempt", "Outcome", "Duration", "State"].map((h) => el("th", {}, h)))), tbody));
  let count = 0;
  try {
    const opened = stream(DELIVERIES, "TailDeliveries", { owner, subscriptionId: subscription }, (m) => {
      if (m.interrupted) {
        add(el("tr", { class: "tail-row interrupted" }, el("td", { colspan: 8 },
          "Interrupted: the server lost its view of recorded attempts for a moment; some may be " +
          "missing here (the delivery log has them all).")));
        return;
      }
      if (m.missed) {
        add(el("tr", { class: "tail-row missed" }, el("td", { colspan: 8 },
          `${m.missed} attempts were not shown: this page fell behind.`)));
        return;
      }
      const d = m.delivery || {}, a = m.attempt || {};
      count += 1;
      status.textContent = `following: ${count} attempts`;
      add(el("tr", { class: "tail-row attempt", "data-delivery": d.deliveryId },
        el("td", {}, when(a.startTime)),
        el("td", {}, el("a", { href: link(["deliveries", d.webhookId]) }, el("span", { class: "id" }, d.webhookId))),
        el("td", {}, el("a", { href: link(["delivery", d.deliveryId]) }, el("span", { class: "id" }, d.deliveryId))),
        el("td", {}, d.eventType || ""),
        el("td", { class: "num" }, String(a.number || 0)),
        el("td", {}, a.httpStatus ? "HTTP " + a.httpStatus : "no answer: " + (a.error || "")),
        el("td", { class: "num" }, ms(a.duration)),
        el("td", {}, el("span", { class: "state " + short(d.state, "DELIVERY_STATE_") }, short(d.state, "DELIVERY_STATE_")))));
    }, controller.signal);
    status.textContent = "following";
    await opened;
    status.textContent = "the server ended the stream";
  } catch (e) {
    if (controller.signal.aborted) return;
    status.textContent = "";
    status.append(errorBox(e));
  }
}

// ---- Routing ---------------------------------------------------------------------------

async function render() {
  generation += 1;
  const show = view();
  if (current) {
    current();
    current = null;
  }
  let parts, query;
  try {
    ({ parts, query } = route());
  } catch (e) {
    ({ parts, query } = { parts: [], query: new URLSearchParams() });
  }
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("current", a.getAttribute("href").split("?")[0] === "#/" + (parts[0] || ""));
  }
  if (!token()) {
    document.getElementById("who").replaceChildren();
    signInPage();
    return;
  }
  try {
    switch (parts[0]) {
      case "signin": return signInPage();
      case "subscriptions":
        if (parts[1] === "new") return await subscriptionForm(null, query);
        if (parts[2] === "edit") return await subscriptionForm(parts[1], query);
        return await subscriptionsPage(query);
      case "deliveries": return await deliveriesPage(parts[1], query);
      case "delivery": return await deliveryPage(parts[1]);
      case "tail": return await tailPage(query);
      default: return await subscriptionsPage(query);
    }
  } catch (e) {
    if (token()) show(errorBox(e));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("nav").replaceChildren(
    el("a", { href: "#/subscriptions" }, "Subscriptions"),
    el("a", { href: "#/tail" }, "Live tail"));
  window.addEventListener("hashchange", () => {
    flashOnce();
    render();
  });
  render();
});

// A flash message outlives the navigation an action triggers, not the next one.
let flashedAt = 0;
function flashOnce() {
  if (Date.now() - flashedAt > 1500) flash("");
}
