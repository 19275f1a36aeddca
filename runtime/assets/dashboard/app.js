// Pigeon dashboard: a few pages over the JSON API, called from the browser
// with the user's own API key (kept in sessionStorage for this tab only).
// Every value from the API is put into the page as text, never as HTML.
"use strict";

(() => {
  const KEY = "pigeon.key";
  const WHO = "pigeon.whoami";
  const STATUSES = ["queued", "scheduled", "sending", "sent", "delivered", "undelivered",
    "failed", "expired", "canceled", "rejected"];
  const state = {
    key: sessionStorage.getItem(KEY),
    who: JSON.parse(sessionStorage.getItem(WHO) || "null"),
    chart: null,
    render: 0,
  };
  const main = document.getElementById("main");
  const nav = document.getElementById("nav");
  const whoBox = document.getElementById("who");

  // ---- DOM helpers -------------------------------------------------------

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
      else if (name === "class") el.className = value;
      else if (name === "dataset") Object.assign(el.dataset, value);
      else el.setAttribute(name, value === true ? "" : value);
    }
    append(el, children);
    return el;
  }

  function append(el, ...children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : String(child));
    }
    return el;
  }

  function replace(el, ...children) {
    el.replaceChildren();
    return append(el, children);
  }

  const dash = "–";
  const show = (v) => (v === null || v === undefined || v === "" ? dash : String(v));

  function time(rfc3339) {
    if (!rfc3339) return dash;
    const d = new Date(rfc3339);
    if (Number.isNaN(d.getTime())) return rfc3339;
    const pad = (n, w = 2) => String(n).padStart(w, "0");
    const text = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
    return h("time", { datetime: rfc3339, title: rfc3339 }, text);
  }

  const int = (n) => (n === null || n === undefined ? dash : Number(n).toLocaleString("en-US"));
  const pct = (r) => (r === null || r === undefined ? dash : `${(r * 100).toFixed(1)}%`);
  const ms = (v) => (v === null || v === undefined ? dash : `${Math.round(v).toLocaleString("en-US")} ms`);
  const badge = (text) => (text ? h("span", { class: `badge ${text}` }, text) : dash);
  const link = (href, text) => h("a", { href }, text);
  // A body retention (or a redact request) erased: null, with redacted_at.
  const bodyOf = (m) => (m.redacted_at ? h("em", null, "Redacted ", time(m.redacted_at)) : m.body);

  // A table from column specs: [heading, row => cell, "num"?].
  function table(columns, rows, empty = "Nothing here yet.") {
    if (!rows.length) return h("p", { class: "empty" }, empty);
    return h("table", null,
      h("thead", null, h("tr", null, columns.map(([title, , kind]) => h("th", { class: kind }, title)))),
      h("tbody", null, rows.map((row) =>
        h("tr", null, columns.map(([, cell, kind]) => h("td", { class: kind }, cell(row)))))));
  }

  function facts(pairs) {
    return h("dl", { class: "facts" }, pairs.map(([k, v]) => [h("dt", null, k), h("dd", null, v)]));
  }

  const panel = (title, ...children) => h("section", { class: "panel" }, title ? h("h2", null, title) : null, children);
  const notice = (kind, text) => h("div", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
  const json = (value) => h("pre", { class: "json" }, JSON.stringify(value, null, 2));

  // ---- The API -----------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(path, { method = "GET", body, key = state.key } = {}) {
    const headers = { Authorization: `Bearer ${key}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    if (!response.ok) {
      const e = (data && data.error) || {};
      const err = new ApiError(response.status, e.code || `http_${response.status}`,
        e.message || response.statusText || "request failed");
      if (response.status === 401 && key === state.key) signOut(`Signed out: ${err.message}.`);
      throw err;
    }
    return data;
  }

  function query(params) {
    const parts = [];
    for (const [k, v] of Object.entries(params)) {
      if (v !== null && v !== undefined && v !== "") parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(v)}`);
    }
    return parts.length ? `?${parts.join("&")}` : "";
  }

  // At most `limit` calls at a time.
  async function mapLimit(items, limit, fn) {
    const out = new Array(items.length);
    let next = 0;
    const worker = async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]);
      }
    };
    await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
    return out;
  }

  function failure(err, what) {
    if (err instanceof ApiError && err.status === 403) {
      return notice("error", `Your key's role (${role()}) may not see ${what}.`);
    }
    if (err instanceof ApiError) return notice("error", `Could not load ${what}: ${err.message} (${err.code}).`);
    return notice("error", `Could not load ${what}: ${err.message || err}`);
  }

  // A panel filled by `load`, showing its own failure instead of breaking the page.
  function async_panel(title, what, load) {
    const body = h("div", null, h("p", { class: "loading" }, "Loading…"));
    const p = panel(title, body);
    load().then((content) => replace(body, content))
      .catch((err) => { if (!(err instanceof ApiError && err.status === 401)) replace(body, failure(err, what)); });
    return p;
  }

  // ---- Sign-in and roles -------------------------------------------------

  const role = () => (state.who ? state.who.key.role : "");
  const isStaff = () => role() === "admin" || role() === "compliance";
  const isOperatorAdmin = () => role() === "admin" && state.who.account.operator;

  const PAGES = [
    { id: "overview", title: "Overview", allowed: () => true, render: overview },
    { id: "messages", title: "Messages", allowed: () => true, render: messages },
    { id: "inbound", title: "Inbound", allowed: () => true, render: inbound },
    { id: "numbers", title: "Numbers & pools", allowed: () => true, render: numbers },
    { id: "compliance", title: "Suppressions & consent", allowed: isStaff, render: compliance },
    { id: "carriers", title: "Carriers", allowed: isOperatorAdmin, render: carriers },
    { id: "policies", title: "Policies", allowed: isStaff, render: policies },
  ];

  function signOut(message) {
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(WHO);
    state.key = null;
    state.who = null;
    signIn(message);
  }

  function signIn(message) {
    destroyChart();
    nav.replaceChildren();
    whoBox.replaceChildren();
    const input = h("input", {
      type: "password", id: "api-key", name: "key", autocomplete: "off", required: true,
      placeholder: "pgn_live_…", "aria-label": "API key",
    });
    const status = h("div");
    if (message) status.append(notice("info", message));
    const form = h("form", {
      onsubmit: async (event) => {
        event.preventDefault();
        const key = input.value.trim();
        if (!key) return;
        replace(status, h("p", { class: "loading" }, "Checking the key…"));
        try {
          const who = await api("/v1/account", { key });
          state.key = key;
          state.who = who;
          sessionStorage.setItem(KEY, key);
          sessionStorage.setItem(WHO, JSON.stringify(who));
          if (!location.hash || location.hash === "#/signin") location.hash = "#/overview";
          else route();
        } catch (err) {
          replace(status, notice("error", err.status === 401
            ? "That key is unknown or revoked."
            : `Could not sign in: ${err.message}`));
        }
      },
    },
    h("label", null, "API key", input),
    h("button", { type: "submit", id: "sign-in" }, "Sign in"));
    replace(main, h("div", { class: "signin panel" },
      h("h1", null, "Sign in to Pigeon"),
      h("p", { class: "caption" }, "Use an API key of your account. The pages show what its role may read; the key stays in this browser tab only."),
      form, status));
    input.focus();
  }

  function frame(current) {
    replace(nav, PAGES.filter((p) => p.allowed()).map((p) =>
      h("a", { href: `#/${p.id}`, class: p.id === current ? "active" : null, dataset: { page: p.id } }, p.title)));
    replace(whoBox,
      h("span", null, state.who.account.name, " · ", h("span", { class: "badge", id: "role" }, role()),
        state.who.key.sandbox ? [" ", h("span", { class: "badge" }, "sandbox")] : null),
      h("button", { type: "button", onclick: () => signOut("Signed out.") }, "Sign out"));
  }

  function destroyChart() {
    if (state.chart) {
      state.chart.destroy();
      state.chart = null;
    }
  }

  async function route() {
    if (!state.key || !state.who) return signIn();
    const [path, search] = location.hash.replace(/^#\/?/, "").split("?");
    const segments = path.split("/").filter(Boolean).map(decodeURIComponent);
    const page = PAGES.find((p) => p.id === segments[0]) || PAGES[0];
    const params = new URLSearchParams(search || "");
    frame(page.id);
    destroyChart();
    const token = ++state.render;
    const view = h("div", { id: `page-${page.id}` });
    replace(main, view);
    if (!page.allowed()) {
      view.append(notice("error", `Your key's role (${role()}) may not see ${page.title}.`));
      return;
    }
    try {
      await page.render(view, segments.slice(1), params, () => token === state.render);
    } catch (err) {
      if (token === state.render && !(err instanceof ApiError && err.status === 401)) {
        view.append(failure(err, page.title.toLowerCase()));
      }
    }
  }

  // ---- Overview ----------------------------------------------------------

  const RANGES = {
    "24h": { label: "Last 24 hours", hours: 24, interval: "hour" },
    "7d": { label: "Last 7 days", hours: 7 * 24, interval: "hour" },
    "30d": { label: "Last 30 days", hours: 30 * 24, interval: "day" },
  };
  const COUNTS = ["accepted", "sent", "delivered", "undelivered", "failed", "rejected", "expired", "canceled", "segments"];
  const COLORS = { accepted: "#2563eb", delivered: "#16a34a", failed: "#dc2626", rate: "#9333ea" };

  function rate(row) {
    const finished = row.delivered + row.undelivered + row.failed + row.expired;
    return finished > 0 ? row.delivered / finished : null;
  }

  // Rows of many buckets summed per group, as the API computes a bucket's.
  function byGroup(rows) {
    const groups = new Map();
    for (const row of rows) {
      let g = groups.get(row.group);
      if (!g) {
        g = { group: row.group, cost: 0, p95: null };
        for (const c of COUNTS) g[c] = 0;
        groups.set(row.group, g);
      }
      for (const c of COUNTS) g[c] += row[c] || 0;
      g.cost += row.cost || 0;
      if (row.dlr_latency_p95_ms !== null && row.dlr_latency_p95_ms !== undefined) {
        g.p95 = Math.max(g.p95 || 0, row.dlr_latency_p95_ms);
      }
    }
    const out = [...groups.values()];
    for (const g of out) g.delivery_rate = rate(g);
    return out.sort((a, b) => b.accepted - a.accepted || String(a.group).localeCompare(String(b.group)));
  }

  function groupTable(rows, heading) {
    return table([
      [heading, (r) => (r.group === "" || r.group === null ? "(none)" : r.group)],
      ["Accepted", (r) => int(r.accepted), "num"],
      ["Delivered", (r) => int(r.delivered), "num"],
      ["Undelivered", (r) => int(r.undelivered), "num"],
      ["Failed", (r) => int(r.failed), "num"],
      ["Rejected", (r) => int(r.rejected), "num"],
      ["Delivery rate", (r) => pct(r.delivery_rate), "num"],
      ["Worst p95 DLR", (r) => ms(r.p95), "num"],
      ["Cost", (r) => r.cost.toFixed(4), "num"],
    ], byGroup(rows), "No messages in this period.");
  }

  function drawChart(box, rows, fromMs, toMs, bucketMs) {
    const buckets = new Map();
    for (let t = fromMs; t < toMs; t += bucketMs) buckets.set(t, null);
    for (const row of rows) {
      const t = Date.parse(row.start);
      const b = buckets.get(t) || { accepted: 0, delivered: 0, undelivered: 0, failed: 0, expired: 0, rejected: 0 };
      for (const c of ["accepted", "delivered", "undelivered", "failed", "expired", "rejected"]) b[c] += row[c] || 0;
      buckets.set(t, b);
    }
    const times = [...buckets.keys()].sort((a, b) => a - b);
    const data = [[], [], [], [], []];
    let total = 0;
    for (const t of times) {
      const b = buckets.get(t);
      data[0].push(t / 1000);
      data[1].push(b ? b.accepted : 0);
      data[2].push(b ? b.delivered : 0);
      data[3].push(b ? b.failed + b.undelivered + b.expired + b.rejected : 0);
      const r = b ? rate(b) : null;
      data[4].push(r === null ? null : r * 100);
      total += b ? b.accepted : 0;
    }
    const width = Math.max(box.clientWidth, 320);
    const opts = {
      width,
      height: 300,
      cursor: { points: { size: 6 } },
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] }, rate: { range: [0, 100] } },
      series: [
        {},
        { points: { show: false }, label: "Accepted", stroke: COLORS.accepted, width: 2, fill: "rgba(37,99,235,0.08)", value: (u, v) => int(v) },
        { points: { show: false }, label: "Delivered", stroke: COLORS.delivered, width: 2, value: (u, v) => int(v) },
        { points: { show: false }, label: "Failed or undelivered", stroke: COLORS.failed, width: 2, value: (u, v) => int(v) },
        {
          label: "Delivery rate", scale: "rate", stroke: COLORS.rate, width: 2, dash: [6, 4], spanGaps: true,
          value: (u, v) => (v === null || v === undefined ? dash : `${v.toFixed(1)}%`),
        },
      ],
      axes: [
        { stroke: "#5f6b7a", grid: { stroke: "#eef0f3" } },
        { label: "Messages", stroke: "#5f6b7a", grid: { stroke: "#eef0f3" } },
        { label: "Delivery rate", scale: "rate", side: 1, stroke: "#5f6b7a", grid: { show: false }, values: (u, ticks) => ticks.map((t) => `${t}%`) },
      ],
    };
    destroyChart();
    box.replaceChildren();
    state.chart = new window.uPlot(opts, data, box);
    box.dataset.buckets = String(times.length);
    box.dataset.total = String(total);
  }

  async function overview(view, _segments, params, current) {
    const rangeId = RANGES[params.get("range")] ? params.get("range") : "24h";
    const range = RANGES[rangeId];
    const bucketMs = range.interval === "hour" ? 3600e3 : 86400e3;
    const toMs = Math.floor(Date.now() / bucketMs) * bucketMs + bucketMs;
    const fromMs = toMs - range.hours * 3600e3;
    const from = new Date(fromMs).toISOString();
    const to = new Date(toMs).toISOString();
    const chartBox = h("div", { class: "chart", id: "volume-chart" }, h("p", { class: "loading" }, "Loading…"));
    const chartPanel = panel("Volume and delivery rate", chartBox,
      h("p", { class: "caption" }, `Messages accepted, delivered and failed per ${range.interval}, and the delivery rate (delivered of those finished), ${range.label.toLowerCase()}.`));
    const carrierBox = h("div", null, h("p", { class: "loading" }, "Loading…"));
    const countryBox = h("div", null, h("p", { class: "loading" }, "Loading…"));
    append(view,
      h("h1", null, "Overview"),
      h("div", { class: "tabs" }, Object.entries(RANGES).map(([id, r]) =>
        h("a", { href: `#/overview?range=${id}`, class: id === rangeId ? "active" : null }, r.label))),
      chartPanel,
      panel("Per carrier", carrierBox),
      panel("Per country", countryBox));

    const analytics = (groupBy) => api(`/v1/analytics/messages${query({ from, to, interval: range.interval, group_by: groupBy })}`);
    const figures = Promise.all([analytics("carrier"), analytics("country")]);
    view.append(failuresPanel(figures.then(([byCarrier]) => byCarrier.data, () => null), from));
    try {
      const [byCarrier, byCountry] = await figures;
      if (!current()) return;
      await whenChartLibraryLoaded();
      drawChart(chartBox, byCarrier.data, fromMs, toMs, bucketMs);
      replace(carrierBox, groupTable(byCarrier.data, "Carrier"));
      replace(countryBox, groupTable(byCountry.data, "Country"));
    } catch (err) {
      if (!current() || (err instanceof ApiError && err.status === 401)) return;
      const unavailable = err instanceof ApiError && (err.status === 404 || err.status === 405);
      const message = unavailable
        ? notice("info", "Analytics are unavailable on this server: GET /v1/analytics/messages is not served.")
        : failure(err, "the analytics");
      replace(chartBox, message);
      replace(carrierBox, message.cloneNode(true));
      replace(countryBox, message.cloneNode(true));
    }
  }

  function whenChartLibraryLoaded() {
    // Both scripts are deferred and run in order, so uPlot is there already;
    // this only guards against a failed load.
    if (window.uPlot) return Promise.resolve();
    return Promise.reject(new Error("the chart library did not load"));
  }

  const FAILURE_SAMPLE = 20;

  // `figures`: the period's analytics rows, or null without analytics. A
  // period with no failures needs no search through the messages.
  function failuresPanel(figures, since) {
    return async_panel("Failures by error code", "the failures", async () => {
      const rows = await figures;
      const count = (status) => (rows ? rows.reduce((n, r) => n + (r[status] || 0), 0) : FAILURE_SAMPLE);
      const recent = (status) => (count(status) > 0
        ? api(`/v1/messages${query({ status, since, limit: FAILURE_SAMPLE })}`)
        : Promise.resolve({ data: [] }));
      const [failed, undelivered] = await Promise.all([recent("failed"), recent("undelivered")]);
      const sample = [...failed.data, ...undelivered.data];
      const details = await mapLimit(sample, 4, (m) => api(`/v1/messages/${encodeURIComponent(m.id)}`));
      const codes = new Map();
      for (const m of details) {
        const found = [...new Set(m.parts.map((p) => p.error_code).filter(Boolean))];
        for (const code of found.length ? found : ["(no code)"]) {
          const key = `${code}\u0000${m.status}`;
          const entry = codes.get(key) || { code, status: m.status, count: 0, latest: m };
          entry.count += 1;
          if (m.created_at > entry.latest.created_at) entry.latest = m;
          codes.set(key, entry);
        }
      }
      const byCode = [...codes.values()].sort((a, b) => b.count - a.count);
      return [
        table([
          ["Error code", (r) => h("code", null, r.code)],
          ["Status", (r) => badge(r.status)],
          ["Messages", (r) => int(r.count), "num"],
          ["Latest", (r) => [link(`#/messages/${r.latest.id}`, r.latest.id), " ", h("span", { class: "caption" }, time(r.latest.created_at))]],
        ], byCode, "No failed or undelivered messages in this period."),
        h("p", { class: "caption" }, `From the ${FAILURE_SAMPLE} most recent failed and the ${FAILURE_SAMPLE} most recent undelivered messages of the period. `,
          link("#/messages?status=failed", "All failed"), " · ", link("#/messages?status=undelivered", "all undelivered")),
      ];
    });
  }

  // ---- Messages ----------------------------------------------------------

  // Pages of a list: `cursor` is this page's, `trail` the ones before it.
  function pager(base, params, nextCursor) {
    const trail = (params.get("trail") || "").split(",").filter((c) => c !== "");
    const cursor = params.get("cursor") || "";
    const at = (c, t) => {
      const p = new URLSearchParams(params);
      p.delete("cursor");
      p.delete("trail");
      if (c) p.set("cursor", c);
      if (t.length) p.set("trail", t.join(","));
      const s = p.toString();
      return `${base}${s ? `?${s}` : ""}`;
    };
    const parts = [];
    if (cursor) {
      const back = trail.slice(0, -1);
      const prev = trail.length ? trail[trail.length - 1] : "";
      parts.push(link(at("", []), "« Newest"), link(at(prev === "-" ? "" : prev, back), "‹ Newer"));
    }
    if (nextCursor) parts.push(link(at(nextCursor, [...trail, cursor || "-"]), "Older ›"));
    return parts.length ? h("div", { class: "pager" }, parts) : null;
  }

  function localInput(rfc3339) {
    if (!rfc3339) return "";
    const d = new Date(rfc3339);
    if (Number.isNaN(d.getTime())) return "";
    const off = d.getTimezoneOffset() * 60000;
    return new Date(d.getTime() - off).toISOString().slice(0, 16);
  }

  async function messages(view, segments, params, current) {
    if (segments[0]) return messageTimeline(view, segments[0], current);
    const to = h("input", { name: "to", id: "filter-to", placeholder: "+84912345678", value: params.get("to") || "", size: 16 });
    const status = h("select", { name: "status", id: "filter-status" },
      h("option", { value: "" }, "any"),
      STATUSES.map((s) => h("option", { value: s, selected: params.get("status") === s }, s)));
    const since = h("input", { type: "datetime-local", name: "since", id: "filter-since", value: localInput(params.get("since")) });
    const form = h("form", {
      class: "filters",
      onsubmit: (event) => {
        event.preventDefault();
        const p = new URLSearchParams();
        if (to.value.trim()) p.set("to", to.value.trim());
        if (status.value) p.set("status", status.value);
        if (since.value) p.set("since", new Date(since.value).toISOString());
        location.hash = `#/messages${p.toString() ? `?${p}` : ""}`;
      },
    },
    h("label", null, "Recipient", to), h("label", null, "Status", status), h("label", null, "Created since", since),
    h("button", { type: "submit" }, "Search"),
    h("button", { type: "button", class: "secondary", onclick: () => { location.hash = "#/messages"; } }, "Clear"));
    const results = h("div", null, h("p", { class: "loading" }, "Loading…"));
    append(view, h("h1", null, "Messages"), panel(null, form, results));
    const page = await api(`/v1/messages${query({
      to: params.get("to"), status: params.get("status"), since: params.get("since"),
      cursor: params.get("cursor"), limit: 50,
    })}`);
    if (!current()) return;
    replace(results,
      table([
        ["Created", (m) => time(m.created_at)],
        ["Message", (m) => link(`#/messages/${m.id}`, h("code", null, m.id))],
        ["To", (m) => m.to],
        ["From", (m) => show(m.from)],
        ["Status", (m) => badge(m.status)],
        ["Type", (m) => m.type],
        ["Country", (m) => show(m.country)],
        ["Parts", (m) => int(m.segments), "num"],
      ], page.data, "No messages match."),
      pager("#/messages", params, page.next_cursor));
  }

  async function messageTimeline(view, id, current) {
    const [m, hooks] = await Promise.all([
      api(`/v1/messages/${encodeURIComponent(id)}`),
      api(`/v1/messages/${encodeURIComponent(id)}/webhooks`),
    ]);
    if (!current()) return;
    const carriers = [...new Set(m.parts.map((p) => p.carrier).filter(Boolean))];
    append(view,
      h("p", null, link("#/messages", "‹ Messages")),
      h("h1", null, "Message ", h("code", null, m.id), " ", badge(m.status)),
      h("div", { class: "grid2" },
        panel("Summary", facts([
          ["To", m.to], ["From", show(m.from)], ["Type", m.type], ["Country", show(m.country)],
          ["Encoding", `${m.encoding}, ${m.segments} part${m.segments === 1 ? "" : "s"}`],
          ["Carriers", carriers.length ? carriers.join(", ") : dash],
          ["Created", time(m.created_at)], ["Updated", time(m.updated_at)],
          ["Send at", time(m.send_at)], ["Expires", time(m.expires_at)],
          ["Sandbox", m.sandbox ? "yes" : "no"],
          ["Policy digest", m.policy_digest ? h("code", null, m.policy_digest) : dash],
          ["Callback URL", show(m.callback_url)],
        ]), h("h2", { class: "spaced" }, "Body"), h("div", { class: "body-text" }, bodyOf(m)),
        Object.keys(m.metadata || {}).length ? [h("h2", null, "Metadata"), json(m.metadata)] : null),
        panel("Timeline", h("ol", { class: "timeline", id: "timeline" }, m.events.map((e) =>
          h("li", null, h("span", { class: "when" }, time(e.at)), badge(e.status),
            e.part !== null && e.part !== undefined ? ` part ${e.part + 1}` : "",
            e.carrier ? [" via ", h("strong", null, e.carrier)] : "",
            e.detail ? [" — ", e.detail] : ""))))),
      panel("Parts", table([
        ["Part", (p) => p.index + 1, "num"],
        ["Status", (p) => badge(p.status)],
        ["Carrier", (p) => show(p.carrier)],
        ["Carrier message id", (p) => (p.carrier_message_id ? h("code", null, p.carrier_message_id) : dash)],
        ["Attempts", (p) => int(p.attempts), "num"],
        ["Error code", (p) => (p.error_code ? h("code", null, p.error_code) : dash)],
      ], m.parts, "No parts.")),
      panel("Webhooks", table([
        ["Created", (d) => time(d.created_at)],
        ["Event", (d) => d.type],
        ["Status", (d) => badge(d.status)],
        ["URL", (d) => h("code", null, d.url)],
        ["Delivery", (d) => badge(d.state)],
        ["Attempts", (d) => int(d.attempts), "num"],
        ["Last error", (d) => show(d.last_error)],
        ["Next attempt", (d) => time(d.next_attempt_at)],
      ], hooks.data, m.callback_url ? "No webhook deliveries yet." : "No webhooks: the message has no callback_url.")));
  }

  // ---- Inbound and keywords ----------------------------------------------

  async function inbound(view, segments, params, current) {
    if (segments[0]) return inboundOne(view, segments[0], current);
    const results = h("div", null, h("p", { class: "loading" }, "Loading…"));
    append(view, h("h1", null, "Inbound messages"), panel(null, results), keywordsPanel());
    const page = await api(`/v1/inbound${query({ cursor: params.get("cursor"), limit: 50 })}`);
    if (!current()) return;
    replace(results, table([
      ["Received", (m) => time(m.received_at)],
      ["Message", (m) => link(`#/inbound/${m.id}`, h("code", null, m.id))],
      ["From", (m) => m.from],
      ["To", (m) => m.to],
      ["Carrier", (m) => show(m.carrier)],
      ["Text", (m) => bodyOf(m)],
    ], page.data, "No inbound messages."), pager("#/inbound", params, page.next_cursor));
  }

  async function inboundOne(view, id, current) {
    const [m, hooks] = await Promise.all([
      api(`/v1/inbound/${encodeURIComponent(id)}`),
      api(`/v1/inbound/${encodeURIComponent(id)}/webhooks`),
    ]);
    if (!current()) return;
    append(view,
      h("p", null, link("#/inbound", "‹ Inbound")),
      h("h1", null, "Inbound ", h("code", null, m.id)),
      panel("Message", facts([
        ["From", m.from], ["To", m.to], ["Carrier", show(m.carrier)],
        ["Carrier message id", show(m.carrier_message_id)],
        ["Number", show(m.number_id)], ["Pool", show(m.pool_id)],
        ["In reply to", m.in_reply_to ? link(`#/messages/${m.in_reply_to}`, m.in_reply_to) : dash],
        ["Sent", time(m.sent_at)], ["Received", time(m.received_at)],
      ]), h("h2", null, "Text"), h("div", { class: "body-text" }, bodyOf(m))),
      panel("Webhooks", table([
        ["Created", (d) => time(d.created_at)],
        ["URL", (d) => h("code", null, d.url)],
        ["Delivery", (d) => badge(d.state)],
        ["Attempts", (d) => int(d.attempts), "num"],
        ["Last error", (d) => show(d.last_error)],
      ], hooks.data, "No webhook deliveries.")));
  }

  function keywordsPanel() {
    return async_panel("Keywords", "the keywords", async () => {
      const k = await api("/v1/account/keywords");
      const list = (v) => (Array.isArray(v) ? v.join(", ") : show(v));
      return [facts([
        ["Opt-out", list(k.opt_out)], ["Opt-out reply", show(k.opt_out_reply)],
        ["Opt-in", list(k.opt_in)], ["Opt-in reply", show(k.opt_in_reply)],
        ["Help", list(k.help)], ["Help reply", show(k.help_reply)],
      ]), h("p", { class: "caption" }, k.custom ? "The account's own keywords." : "Pigeon's default keywords (the account has set none).")];
    });
  }

  // ---- Numbers and sender pools ------------------------------------------

  async function numbers(view) {
    append(view, h("h1", null, "Numbers and sender pools"),
      async_panel("Numbers", "the numbers", async () => {
        const page = await api("/v1/numbers");
        return table([
          ["Sender", (n) => h("code", null, n.sender)],
          ["Kind", (n) => n.kind],
          ["Country", (n) => show(n.country)],
          ["Carrier", (n) => show(n.carrier)],
          ["Capabilities", (n) => (Array.isArray(n.capabilities) ? n.capabilities.join(", ") : show(n.capabilities))],
          ["Owner", (n) => (n.available ? badge("available") : h("code", null, n.account_id))],
          ["Pool", (n) => show(n.pool_id)],
          ["Inbound URL", (n) => show(n.inbound_url)],
        ], page.data, "The account has no numbers.");
      }),
      async_panel("Sender pools", "the sender pools", async () => {
        const page = await api("/v1/sender-pools");
        return table([
          ["Pool", (p) => [h("strong", null, p.name), h("br"), h("code", null, p.id)]],
          ["Senders", (p) => p.senders.length ? p.senders.join(", ") : dash],
          ["Sticky", (p) => (p.sticky_sender ? "yes" : "no")],
          ["Geo match", (p) => (p.geo_match ? "yes" : "no")],
          ["Fallback", (p) => p.fallback],
          ["Inbound URL", (p) => show(p.inbound_url)],
          ["Updated", (p) => time(p.updated_at)],
        ], page.data, "The account has no sender pools.");
      }));
  }

  // ---- Suppressions and consent ------------------------------------------

  async function compliance(view, _segments, params, current) {
    const number = h("input", { name: "number", id: "history-number", placeholder: "+84912345678", value: params.get("number") || "", size: 16 });
    const historyBox = h("div");
    append(view, h("h1", null, "Suppressions and consent"),
      panel("Consent history of a number",
        h("form", {
          class: "filters",
          onsubmit: (event) => {
            event.preventDefault();
            const p = new URLSearchParams(params);
            p.set("number", number.value.trim());
            location.hash = `#/compliance?${p}`;
          },
        }, h("label", null, "Number", number), h("button", { type: "submit" }, "Show history")),
        historyBox),
      h("div", { class: "grid2" },
        async_panel("Suppressions", "the suppressions", async () => {
          const page = await api(`/v1/suppressions${query({ cursor: params.get("cursor"), limit: 50 })}`);
          return [table([
            ["Number", (s) => link(`#/compliance?number=${encodeURIComponent(s.number)}`, s.number)],
            ["Scope", (s) => (s.scope === "pool" ? `pool ${s.pool_id}` : "account")],
            ["Source", (s) => show(s.source)],
            ["Reason", (s) => show(s.reason)],
            ["Since", (s) => time(s.created_at)],
          ], page.data, "No suppressed numbers."), pager("#/compliance", params, page.next_cursor)];
        }),
        async_panel("Consents", "the consents", async () => {
          const page = await api("/v1/consents");
          return table([
            ["Number", (c) => link(`#/compliance?number=${encodeURIComponent(c.number)}`, c.number)],
            ["Purpose", (c) => c.purpose],
            ["Source", (c) => c.source],
            ["Collected", (c) => time(c.collected_at)],
            ["State", (c) => badge(c.active ? "active" : "withdrawn")],
          ], page.data, "No consents recorded.");
        })));
    const wanted = params.get("number");
    if (!wanted) return;
    replace(historyBox, h("p", { class: "loading" }, "Loading…"));
    try {
      const history = await api(`/v1/consents/${encodeURIComponent(wanted)}/history`);
      if (!current()) return;
      replace(historyBox, table([
        ["At", (e) => time(e.at)],
        ["Event", (e) => badge(e.kind)],
        ["Purpose", (e) => show(e.purpose)],
        ["Scope", (e) => (e.scope === "pool" ? `pool ${e.pool_id}` : show(e.scope))],
        ["Source", (e) => show(e.source)],
        ["Evidence", (e) => show(e.evidence)],
        ["By", (e) => show(e.actor)],
      ], history.data, `Nothing recorded for ${history.number}.`));
    } catch (err) {
      if (current()) replace(historyBox, failure(err, "the history"));
    }
  }

  // ---- Carriers ----------------------------------------------------------

  async function carriers(view, _segments, _params, current) {
    const page = await api("/v1/carriers");
    if (!current()) return;
    const win = (w) => `${pct(w.delivery_rate)} delivered · ${pct(w.error_rate)} errors · ${int(w.submissions)} sent · ${int(w.reports)} reports · median DLR ${ms(w.median_dlr_latency_ms)}`;
    append(view, h("h1", null, "Carriers"),
      panel("Health", table([
        ["Carrier", (c) => h("strong", null, c.name)],
        ["State", (c) => badge(c.state)],
        ["Plugin", (c) => [h("code", null, `${c.plugin.name} ${c.plugin.version}`), h("br"), h("span", { class: "caption" }, `contract ${c.plugin.contract_version}`)]],
        ["Last 15 minutes", (c) => win(c.stats.last_15_minutes)],
        ["Last 24 hours", (c) => win(c.stats.last_24_hours)],
        ["In flight", (c) => int(c.in_flight), "num"],
      ], page.data, "No carriers are configured.")),
      page.data.map((c) => panel(`${c.name}`,
        h("div", { class: "grid2" },
          h("div", null, facts([
            ["State", badge(c.state)],
            ["Plugin", `${c.plugin.name} ${c.plugin.version} (contract ${c.plugin.contract_version})`],
            ["Capabilities", Array.isArray(c.plugin.capabilities) ? c.plugin.capabilities.join(", ") : show(c.plugin.capabilities)],
            ["Plugin file", h("code", null, c.plugin.path)],
            ["Last reload error", c.plugin.reload_error ? h("code", null, c.plugin.reload_error) : dash],
            ["Base URL", show(c.base_url)],
            ["Countries", Array.isArray(c.countries) && c.countries.length ? c.countries.join(", ") : "any"],
            ["Pacing", `${c.tps === null || c.tps === undefined ? "no" : c.tps} messages/s, window ${c.window === null || c.window === undefined ? dash : c.window}`],
          ])),
          h("div", null,
            table([["Counter", (r) => r[0]], ["Value", (r) => int(r[1]), "num"]], Object.entries(c.counters)),
            table([["Plugin calls", (r) => r[0]], ["Value", (r) => int(r[1]), "num"]], Object.entries(c.plugin_calls)))))));
  }

  // ---- Policies ----------------------------------------------------------

  const SIMULATE_EXAMPLE = { message: { to: "+84912345678", body: "Your code is 123456", type: "otp" } };

  async function policies(view, _segments, _params, current) {
    let active;
    try {
      active = await api("/v1/policies");
    } catch (err) {
      if (err instanceof ApiError && err.code === "policies_off") {
        view.append(h("h1", null, "Policies"), notice("info", "No policies are in use: the policies directory did not exist when Pigeon started."));
        return;
      }
      throw err;
    }
    if (!current()) return;
    const input = h("textarea", { id: "simulate-input", spellcheck: "false", "aria-label": "Simulate request" }, JSON.stringify(SIMULATE_EXAMPLE, null, 2));
    const result = h("div", { id: "simulate-result" });
    const form = h("form", {
      onsubmit: async (event) => {
        event.preventDefault();
        let body;
        try { body = JSON.parse(input.value); } catch (err) {
          replace(result, notice("error", `The request is not valid JSON: ${err.message}`));
          return;
        }
        replace(result, h("p", { class: "loading" }, "Simulating…"));
        try {
          replace(result, simulation(await api("/v1/policies/simulate", { method: "POST", body })));
        } catch (err) {
          if (!(err instanceof ApiError && err.status === 401)) {
            replace(result, notice("error", `${err.code || "error"}: ${err.message}`));
          }
        }
      },
    }, input, h("p", null, h("button", { type: "submit", id: "simulate" }, "Simulate")));

    const counters = Object.entries(active.counters || {});
    append(view, h("h1", null, "Policies"),
      active.last_error ? notice("error", ["Last reload failed: ", h("code", { id: "policy-error" }, active.last_error)]) : null,
      h("div", { class: "grid2" },
        panel("Active policies", facts([
          ["Digest", h("code", { id: "policy-digest" }, active.digest)],
          ["Loaded", time(active.loaded_at)],
          ["Directory", h("code", null, active.dir)],
          ["Files", Array.isArray(active.files) ? active.files.map((f) => (typeof f === "string" ? f : JSON.stringify(f))).join(", ") : show(active.files)],
          ["Failed reloads", int(active.failed_reloads)],
          ["Last error", active.last_error ? h("code", null, active.last_error) : "none"],
        ])),
        panel("Calls", table([
          ["Policy", (r) => r[0]],
          ["Calls", (r) => int(r[1].calls), "num"],
          ["Errors", (r) => int(r[1].errors), "num"],
          ["Cut off", (r) => int(r[1].cut_offs), "num"],
        ], counters))),
      panel("Simulate", h("p", { class: "caption" },
        "A body for POST /v1/policies/simulate: a message as for POST /v1/messages, and optionally ",
        h("code", null, "carriers"), " (names) and ", h("code", null, "sources"), " (draft files by name). Nothing is stored or sent."),
      form, result),
      async_panel("Reload history", "the reload history", async () => {
        const history = await api("/v1/policies/history");
        return table([
          ["At", (r) => time(r.at)],
          ["Result", (r) => badge(r.result)],
          ["Digest", (r) => (r.digest ? h("code", null, r.digest) : dash)],
          ["Error", (r) => (r.error ? h("code", null, r.error) : dash)],
        ], history.data, "No reloads yet.");
      }));
  }

  function simulation(r) {
    const decision = (d) => (d ? [badge(d.decision), d.code ? [" ", h("code", null, d.code)] : null, d.reason ? ` ${d.reason}` : null,
      d.error ? [" ", h("code", null, d.error)] : null] : dash);
    return h("div", null,
      facts([
        ["Digest", [h("code", null, r.digest), r.draft ? " (draft)" : ""]],
        ["Message", `${r.message.to} · ${show(r.message.country)} · ${r.message.type} · ${r.message.encoding}, ${r.message.segments} part(s)`],
        ["Content", [decision(r.content), r.content && r.content.text ? [" → ", r.content.text] : null]],
        ["Route", [decision(r.route), r.route && r.route.carriers ? ` ${r.route.carriers.join(" → ")}` : null, r.route && r.route.fallback ? " (fallback)" : null]],
        ["Pacing", r.pacing ? [decision(r.pacing), ` on ${r.pacing.carrier}`, r.pacing.until ? [" until ", time(r.pacing.until)] : null] : dash],
      ]),
      h("details", null, h("summary", null, "Full answer"), json(r)));
  }

  window.addEventListener("hashchange", route);
  window.addEventListener("resize", () => {
    const box = document.getElementById("volume-chart");
    if (state.chart && box) state.chart.setSize({ width: Math.max(box.clientWidth, 320), height: 300 });
  });
  route();
})();
