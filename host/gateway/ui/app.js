// Switchyard dashboard: plain JS, no build step, nothing fetched but this gateway's own
// admin routes. The admin token lives in sessionStorage (this tab only) and travels as a
// Bearer header, never in a URL; the live stream is read with fetch(), which can send it.
"use strict";

(() => {
  const TOKEN_KEY = "switchyard.adminToken";
  const KEEP = 2000; // decisions kept in memory
  const ROWS = 200; // decisions shown
  const WINDOW_S = 60; // chart window
  const LAT_PER_SECOND = 500; // latency samples kept per backend and second
  const POLL_MS = 2000;

  const $ = (id) => document.getElementById(id);
  let token = sessionStorage.getItem(TOKEN_KEY);
  let session = 0; // bumped on sign-in and sign-out: stale loops stop
  let streamAbort = null;
  let timers = [];

  const decisions = [];
  const seconds = new Map(); // backend -> Map(second -> {n, err, lat: []})
  const byModel = new Map(); // "backend\u0000model" -> {backend, model, n, cost}
  let received = 0;
  let missed = 0;
  let dirty = true;
  let lastPolicies = "";
  const CONFIRM_MS = 5000; // a policy action's button waits this long for its second press
  let armed = null; // {key, until}: the action button pressed once, awaiting confirmation
  let lastOverview = "";

  // ---------- helpers

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k.startsWith("data-")) node.setAttribute(k, v);
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function usd(v, digits = 6) {
    return v === null || v === undefined ? "none" : "$" + Number(v).toFixed(digits);
  }

  function ms(v) {
    return v === null || v === undefined ? "–" : Number(v).toFixed(1) + " ms";
  }

  function pct(v) {
    return (Number(v) * 100).toFixed(1) + " %";
  }

  function utcTime(msSinceEpoch) {
    return new Date(msSinceEpoch).toISOString().slice(11, 23);
  }

  function setText(id, text) {
    $(id).textContent = text;
  }

  function auth() {
    return { Authorization: "Bearer " + token };
  }

  class Unauthorized extends Error {}

  async function api(path, options = {}) {
    const response = await fetch(path, {
      ...options,
      headers: { ...auth(), ...(options.headers || {}) },
      cache: "no-store",
    });
    if (response.status === 401) {
      showLogin("The gateway refused the token: sign in again.");
      throw new Unauthorized();
    }
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    return { status: response.status, body };
  }

  // ---------- sign in and out

  function stop() {
    session += 1;
    if (streamAbort) streamAbort.abort();
    streamAbort = null;
    for (const t of timers) clearInterval(t);
    timers = [];
  }

  function showLogin(message) {
    stop();
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    $("dashboard").hidden = true;
    $("nav").hidden = true;
    $("login").hidden = false;
    setText("login-error", message || "");
    $("token").focus();
  }

  async function start() {
    stop();
    const mine = session;
    let first;
    try {
      first = await api("/admin/overview");
    } catch (e) {
      if (!(e instanceof Unauthorized)) {
        showLogin("Could not reach the gateway: " + e.message);
      }
      return;
    }
    if (mine !== session) return;
    if (first.status !== 200) {
      showLogin("The gateway answered " + first.status + ".");
      return;
    }
    $("login").hidden = true;
    setText("login-error", "");
    $("dashboard").hidden = false;
    $("nav").hidden = false;
    document.body.dataset.signedIn = "yes";
    renderOverview(first.body);
    refreshPolicies(first.body.policies);
    stream(mine);
    timers.push(setInterval(() => poll(mine), POLL_MS));
    timers.push(setInterval(renderLive, 500));
  }

  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token").value.trim();
    $("token").value = "";
    if (!value) return;
    token = value;
    sessionStorage.setItem(TOKEN_KEY, value);
    start();
  });

  $("sign-out").addEventListener("click", () => showLogin("Signed out."));

  async function poll(mine) {
    try {
      const overview = await api("/admin/overview");
      if (mine !== session) return;
      if (overview.status === 200) {
        renderOverview(overview.body);
        await refreshPolicies(overview.body.policies);
        setText("status", "Updated " + utcTime(Date.now()) + " UTC.");
      } else {
        setText("status", "Overview failed: HTTP " + overview.status + ".");
      }
    } catch (e) {
      if (!(e instanceof Unauthorized) && mine === session) {
        setText("status", "Gateway unreachable: " + e.message);
      }
    }
  }

  // ---------- live stream

  async function stream(mine) {
    const ctrl = new AbortController();
    streamAbort = ctrl;
    try {
      const response = await fetch("/admin/events", { headers: auth(), signal: ctrl.signal });
      if (response.status === 401) {
        showLogin("The gateway refused the token: sign in again.");
        return;
      }
      if (!response.ok) throw new Error("HTTP " + response.status);
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          onBlock(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch (e) {
      if (ctrl.signal.aborted || mine !== session) return;
      setText("stream-state", "disconnected (" + e.message + "), reconnecting");
    }
    if (mine !== session || ctrl.signal.aborted) return;
    setText("stream-state", "disconnected, reconnecting");
    setTimeout(() => {
      if (mine === session) stream(mine);
    }, 2000);
  }

  function onBlock(block) {
    let event = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
    if (event === "ready") {
      setText("stream-state", "connected");
      document.body.dataset.stream = "connected";
    } else if (event === "lagged") {
      missed += Number(data.join("")) || 0;
      dirty = true;
    } else if (event === "decision") {
      try {
        onDecision(JSON.parse(data.join("\n")));
      } catch (_) {
        // A malformed event is skipped.
      }
    }
  }

  function onDecision(d) {
    received += 1;
    decisions.push(d);
    if (decisions.length > KEEP) decisions.splice(0, decisions.length - KEEP);
    const backend = d.backend || "(none)";
    // Bucketed by arrival: the chart window is this browser's clock, whatever the gateway's.
    const sec = Math.floor(Date.now() / 1000);
    let perBackend = seconds.get(backend);
    if (!perBackend) seconds.set(backend, (perBackend = new Map()));
    let bucket = perBackend.get(sec);
    if (!bucket) perBackend.set(sec, (bucket = { n: 0, err: 0, lat: [] }));
    bucket.n += 1;
    if (d.status >= 400 || d.status === 0) bucket.err += 1;
    if (bucket.lat.length < LAT_PER_SECOND) bucket.lat.push(d.latency_ms);
    if (d.backend) {
      const key = d.backend + "\u0000" + (d.served_model || "");
      let m = byModel.get(key);
      if (!m) byModel.set(key, (m = { backend: d.backend, model: d.served_model || "", n: 0, cost: 0 }));
      m.n += 1;
      m.cost += d.cost_usd || 0;
    }
    dirty = true;
  }

  function filters() {
    const out = [];
    for (const input of document.querySelectorAll(".filters input")) {
      const v = input.value.trim().toLowerCase();
      if (v) out.push([input.dataset.field, v]);
    }
    return out;
  }

  for (const input of document.querySelectorAll(".filters input")) {
    input.addEventListener("input", () => {
      dirty = true;
      renderLive();
    });
  }

  function fallbackText(d) {
    if (d.policy_fallback && d.failover) return "policy fallback + failover";
    if (d.policy_fallback) return "policy fallback";
    if (d.failover) return "failover";
    return "no";
  }

  function renderLive() {
    renderCharts();
    if (!dirty) return;
    dirty = false;
    setText("stream-stats", received + " received" + (missed ? ", " + missed + " missed (the page fell behind)" : "") + ".");
    const active = filters();
    const rows = [];
    for (let i = decisions.length - 1; i >= 0 && rows.length < ROWS; i--) {
      const d = decisions[i];
      const keep = active.every(([field, v]) => String(d[field] || "").toLowerCase().includes(v));
      if (!keep) continue;
      rows.push(
        el(
          "tr",
          { "data-request-id": d.request_id, class: d.status === 200 ? null : "bad" },
          el("td", { text: utcTime(d.ts_ms) }),
          el("td", { text: d.request_id, class: "mono" }),
          el("td", { text: d.tenant, "data-cell": "tenant" }),
          el("td", { text: d.model + (d.served_model ? " → " + d.served_model : "") }),
          el("td", { text: d.policy, "data-cell": "policy", class: "mono" }),
          el("td", { text: d.reason, "data-cell": "reason" }),
          el("td", { text: d.backend || "none", "data-cell": "backend" }),
          el("td", { text: String(d.status), "data-cell": "status" }),
          el("td", { text: ms(d.latency_ms) }),
          el("td", { text: d.cost_usd === null || d.cost_usd === undefined ? "–" : usd(d.cost_usd, 8), "data-cell": "cost" }),
          el("td", { text: fallbackText(d), "data-cell": "fallback" })
        )
      );
    }
    $("decisions").querySelector("tbody").replaceChildren(...rows);
    const models = [...byModel.values()].sort((a, b) => (a.backend + a.model).localeCompare(b.backend + b.model));
    $("by-model").querySelector("tbody").replaceChildren(
      ...models.map((m) =>
        el(
          "tr",
          { "data-backend": m.backend, "data-model": m.model },
          el("td", { text: m.backend }),
          el("td", { text: m.model || "–" }),
          el("td", { text: String(m.n) }),
          el("td", { text: usd(m.cost, 8) })
        )
      )
    );
  }

  // ---------- charts (inline SVG, computed here from the stream)

  function quantile(sorted, q) {
    if (!sorted.length) return null;
    return sorted[Math.min(sorted.length - 1, Math.round((sorted.length - 1) * q))];
  }

  function sparkline(title, series, summary) {
    const w = 180;
    const h = 40;
    const all = series.flatMap((s) => s.points.filter((p) => p !== null));
    const max = Math.max(1e-9, ...all);
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    svg.setAttribute("width", w);
    svg.setAttribute("height", h);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", title + ": " + summary);
    for (const s of series) {
      const n = s.points.length;
      const pts = [];
      s.points.forEach((v, i) => {
        if (v === null) return;
        const x = n > 1 ? (i / (n - 1)) * (w - 2) + 1 : w / 2;
        const y = h - 2 - (v / max) * (h - 4);
        pts.push(x.toFixed(1) + "," + y.toFixed(1));
      });
      const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
      line.setAttribute("points", pts.join(" "));
      line.setAttribute("class", "series " + s.cls);
      svg.append(line);
      if (pts.length === 1) {
        // One sample draws no line: mark it.
        const [x, y] = pts[0].split(",");
        const dot = document.createElementNS("http://www.w3.org/2000/svg", "circle");
        dot.setAttribute("cx", x);
        dot.setAttribute("cy", y);
        dot.setAttribute("r", "2.5");
        dot.setAttribute("class", "dot " + s.cls);
        svg.append(dot);
      }
    }
    return el("figure", { class: "chart" }, svg, el("figcaption", { text: title + ": " + summary }));
  }

  function renderCharts() {
    const now = Math.floor(Date.now() / 1000);
    const from = now - WINDOW_S + 1;
    const figures = [];
    for (const [backend, perBackend] of [...seconds.entries()].sort()) {
      for (const sec of perBackend.keys()) if (sec < from) perBackend.delete(sec);
      const rate = [];
      const errors = [];
      const p50 = [];
      const p99 = [];
      let total = 0;
      let failed = 0;
      let all = [];
      for (let s = from; s <= now; s++) {
        const b = perBackend.get(s);
        rate.push(b ? b.n : 0);
        errors.push(b && b.n ? (b.err / b.n) * 100 : 0);
        if (b) {
          total += b.n;
          failed += b.err;
          all = all.concat(b.lat);
        }
      }
      // Latency percentiles per 5-second slice.
      for (let s = from; s <= now; s += 5) {
        let lat = [];
        for (let t = s; t < s + 5; t++) {
          const b = perBackend.get(t);
          if (b) lat = lat.concat(b.lat);
        }
        lat.sort((a, b) => a - b);
        p50.push(quantile(lat, 0.5));
        p99.push(quantile(lat, 0.99));
      }
      if (total === 0) {
        seconds.delete(backend);
        continue;
      }
      all.sort((a, b) => a - b);
      const card = el(
        "div",
        { class: "chart-card", "data-backend": backend },
        el("h4", { text: backend }),
        sparkline("Requests", [{ points: rate, cls: "rate" }], (total / WINDOW_S).toFixed(2) + " req/s (" + total + " in 60 s)"),
        sparkline("Errors", [{ points: errors, cls: "err" }], (total ? ((failed / total) * 100).toFixed(1) : "0.0") + " % (" + failed + ")"),
        sparkline(
          "Latency p50 / p99",
          [
            { points: p50, cls: "p50" },
            { points: p99, cls: "p99" },
          ],
          ms(quantile(all, 0.5)) + " / " + ms(quantile(all, 0.99))
        )
      );
      figures.push(card);
    }
    if (!figures.length) figures.push(el("p", { text: "No decisions in the last 60 s." }));
    $("charts").replaceChildren(...figures);
  }

  // ---------- overview: spend and backends

  function stateClass(state) {
    if (state === "at hard cap") return "bad";
    if (state.startsWith("over")) return "warn";
    return "ok";
  }

  function renderOverview(o) {
    const text = JSON.stringify([o.tenants, o.backends, o.spend_error]);
    if (text === lastOverview) return;
    lastOverview = text;
    setText("spend-error", o.spend_error ? "Spend unavailable: " + o.spend_error : "");
    $("tenants").querySelector("tbody").replaceChildren(
      ...o.tenants.map((t) =>
        el(
          "tr",
          { "data-tenant": t.tenant },
          el("th", { scope: "row", text: t.tenant }),
          el("td", { text: t.state, class: "state " + stateClass(t.state), "data-cell": "state" }),
          el("td", { text: usd(t.today_usd), "data-cell": "today" }),
          el("td", { text: usd(t.daily_budget_usd), "data-cell": "daily" }),
          el("td", { text: usd(t.month_usd), "data-cell": "month" }),
          el("td", { text: usd(t.monthly_budget_usd), "data-cell": "monthly" }),
          el("td", { text: usd(t.hard_cap_usd), "data-cell": "cap" }),
          el(
            "td",
            { "data-cell": "projection" },
            usd(t.projected_month_usd) +
              (t.monthly_budget_usd !== null && t.projected_month_usd > t.monthly_budget_usd ? " (over the monthly budget)" : "")
          ),
          el("td", { text: String(t.attempts), "data-cell": "attempts" }),
          el("td", { text: String(t.open_reservations) })
        )
      )
    );
    $("backend-table").querySelector("tbody").replaceChildren(
      ...o.backends.map((b) =>
        el(
          "tr",
          { "data-backend": b.name },
          el("th", { scope: "row", text: b.name }),
          el("td", { text: b.kind }),
          el("td", { text: b.healthy ? "healthy" : "unhealthy", class: "state " + (b.healthy ? "ok" : "bad"), "data-cell": "health" }),
          el("td", { text: b.breaker, class: "state " + (b.breaker === "closed" ? "ok" : "bad"), "data-cell": "breaker" }),
          el("td", { text: ms(b.latency_p50_ms) }),
          el("td", { text: ms(b.latency_p95_ms) }),
          el("td", { text: ms(b.latency_ewma_ms) }),
          el("td", { text: pct(b.error_rate), "data-cell": "error-rate" }),
          el("td", { text: String(b.in_flight), "data-cell": "in-flight" }),
          el("td", { text: String(b.queue_depth) })
        )
      )
    );
  }

  // ---------- policies

  async function refreshPolicies(available) {
    if (!available) {
      $("policy-list").replaceChildren(el("p", { text: "Static targets: no policy components to manage." }));
      return;
    }
    const r = await api("/admin/policies");
    if (r.status !== 200 || !r.body) {
      setText("policy-result", "Listing policies failed: HTTP " + r.status + ".");
      return;
    }
    const text = JSON.stringify(r.body.policies);
    if (text === lastPolicies) return;
    lastPolicies = text;
    renderPolicies(r.body.policies);
  }

  function versionText(v) {
    return (
      v.policy + " (version " + v.version + ", " + v.origin + ", loaded " + new Date(v.loaded_at_ms).toISOString().replace("T", " ").slice(0, 19) + " UTC" + (v.quarantined ? ", QUARANTINED" : "") + ")"
    );
  }

  function candidateText(c) {
    if (!c) return "none";
    let how;
    if (c.mode === "canary") {
      how = "canary, " + c.percent + " % of tenants, served " + c.served;
    } else {
      const judged = c.agree + c.disagree;
      how = "shadow, agrees " + c.agree + " / " + judged + (judged ? " (" + ((c.agree / judged) * 100).toFixed(1) + " %)" : "") + ", " + (c.fallbacks || 0) + " with a fallback (not judged)";
    }
    return versionText(c) + ": " + how;
  }

  // The newest few admin uploads: what each is (live or a candidate), its stage and time.
  function uploadsText(list) {
    if (!list || !list.length) return "none";
    return list
      .slice(0, 3)
      .map((u) => {
        const what = !u.mode ? "live" : u.mode.mode === "canary" ? "canary " + u.mode.percent + " %" : "shadow";
        const time = (u.elapsed_ms / 1000).toFixed(1) + " s";
        const running = ["queued", "compiling", "testing"].includes(u.stage);
        return u.digest.slice(0, 12) + " (" + what + "): " + u.stage + (running ? ", " + time + " so far" : " after " + time) + (u.error ? ": " + u.error : "");
      })
      .join("; ");
  }

  function row(term, value, cell) {
    return [el("dt", { text: term }), el("dd", { text: value, "data-cell": cell })];
  }

  function renderPolicies(list) {
    const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.key : null;
    const articles = list.map((p) => {
      const scopes = [];
      if (p.models.length) scopes.push("models " + p.models.join(", "));
      if (p.tenants.length) scopes.push("tenants " + p.tenants.join(", "));
      const history = p.history.length
        ? el("ol", { class: "history" }, ...p.history.map((v) => el("li", { text: versionText(v) })))
        : el("p", { text: "No earlier version." });
      const button = (action, label, enabled) => {
        const key = action + "/" + p.name;
        const waiting = enabled && armed && armed.key === key && Date.now() < armed.until;
        return el("button", {
          type: "button",
          "data-action": action,
          "data-policy": p.name,
          "data-key": key,
          "data-armed": waiting ? "yes" : "no",
          disabled: !enabled,
          text: waiting ? "Confirm: " + label.toLowerCase() + "?" : label,
        });
      };
      return el(
        "article",
        { class: "policy", "data-policy": p.name },
        el("h3", { text: p.name }),
        el(
          "dl",
          {},
          ...row("Scope", scopes.length ? scopes.join("; ") : "default (model auto and every unscoped request)", "scope"),
          ...row("Live", p.live.policy, "live"),
          ...row("Live version", versionText(p.live), "live-version"),
          ...row("Candidate", candidateText(p.candidate), "candidate"),
          ...row("Uploads", uploadsText(p.uploads), "uploads"),
          ...row("Decisions", String(p.decisions), "decisions"),
          ...row("Status", p.status + " (" + p.swaps + " swaps, " + p.rejected_updates + " rejected updates)", "status"),
          ...row("Last reload error", p.last_error ? p.last_error + (p.last_error_at_ms ? " at " + new Date(p.last_error_at_ms).toISOString() : "") : "none", "last-error")
        ),
        el("h4", { text: "History (newest first)" }),
        history,
        el(
          "div",
          { class: "actions" },
          button("rollback", "Roll back to the previous version", p.history.length > 0),
          button("promote", "Promote the candidate", !!p.candidate),
          button("abort", "Abort the candidate", !!p.candidate)
        )
      );
    });
    $("policy-list").replaceChildren(...articles);
    if (focused) {
      const again = document.querySelector(`[data-key="${CSS.escape(focused)}"]`);
      if (again && !again.disabled) again.focus();
    }
  }

  $("policy-list").addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button || button.disabled) return;
    const { action, policy, key } = button.dataset;
    // Rollback, promote and abort change what serves live traffic: the first press asks,
    // a second press within CONFIRM_MS does it.
    if (button.dataset.armed !== "yes") {
      armed = { key, until: Date.now() + CONFIRM_MS };
      setText("policy-result", "Press again within " + CONFIRM_MS / 1000 + " s to confirm " + action + " of " + policy + ".");
      lastPolicies = "";
      await refreshPolicies(true);
      setTimeout(() => {
        if (armed && armed.key === key && Date.now() >= armed.until) {
          armed = null;
          lastPolicies = "";
          refreshPolicies(true);
        }
      }, CONFIRM_MS + 50);
      return;
    }
    armed = null;
    button.disabled = true;
    setText("policy-result", action + " of " + policy + "…");
    try {
      const r = await api("/admin/policies/" + encodeURIComponent(policy) + "/" + action, { method: "POST" });
      if (r.status === 200) {
        const b = r.body || {};
        const what = b.to ? b.from + " → " + b.to : b.digest || b.result || "done";
        setText("policy-result", action + " of " + policy + ": " + what + ".");
      } else {
        const message = r.body && r.body.error ? r.body.error.message : "HTTP " + r.status;
        setText("policy-result", action + " of " + policy + " refused: " + message);
      }
      lastPolicies = "";
      await refreshPolicies(true);
    } catch (e) {
      if (!(e instanceof Unauthorized)) setText("policy-result", action + " failed: " + e.message);
    }
  });

  // ---------- start

  if (token) start();
  else showLogin("");
})();
