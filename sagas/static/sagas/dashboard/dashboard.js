// The live dashboard: applies the server's snapshot and update frames to the page in place.
// Memory stays bounded: at most config.maxRows rows, one chart window, no event history.
(function () {
  "use strict";

  const config = JSON.parse(document.getElementById("dashboard-config").textContent);
  const filters = config.filters;
  const rows = document.getElementById("rows");
  const empty = document.getElementById("empty");
  const rowTemplate = document.getElementById("row-template").content.firstElementChild;
  const actionsTemplate = document.getElementById("actions-template").content;
  const live = document.getElementById("live");
  const detail = document.getElementById("detail");
  const result = document.getElementById("action-result");
  const footer = document.getElementById("stats");
  const countCells = new Map(
    [...document.querySelectorAll("[data-count]")].map((el) => [el.dataset.count, el])
  );

  // What a measuring tool (manage.py dashboard_load) or a curious operator can read.
  const stats = (window.dashboardStats = {
    frames: 0, events: 0, bytes: 0, snapshots: 0, reconnects: 0, position: "", lastFrameAt: 0,
  });

  const shown = new Map(); // saga id -> {tr, saga}
  let position = null;
  let retryDelay = 500;

  // --- formatting -------------------------------------------------------------------------

  function clock(ms) {
    return ms ? new Date(ms).toLocaleTimeString([], { hour12: false }) : "";
  }

  function duration(ms) {
    if (ms === null || ms === undefined || ms < 0) return "";
    if (ms < 1000) return ms + " ms";
    if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
    return Math.round(ms / 60000) + " min";
  }

  function detailUrl(id) {
    return config.detailUrl.replace(config.placeholder, id);
  }

  // --- recent sagas -----------------------------------------------------------------------

  function matches(saga) {
    if (filters.status && saga.status !== filters.status) return false;
    if (filters.reason && saga.reason !== filters.reason) return false;
    if (filters.q && saga.id !== filters.q && !saga.order.startsWith(filters.q)) return false;
    return true;
  }

  function actionsFor(id) {
    const forms = actionsTemplate.cloneNode(true);
    for (const form of forms.querySelectorAll("form")) {
      form.setAttribute("action", form.getAttribute("action").replace(config.placeholder, id));
      for (const button of form.querySelectorAll("button")) {
        button.setAttribute("aria-label", button.textContent + " saga " + id);
      }
    }
    return forms;
  }

  function fill(tr, saga) {
    const field = (name) => tr.querySelector('[data-field="' + name + '"]');
    tr.dataset.saga = saga.id;
    tr.dataset.created = saga.created;
    const badge = field("status");
    badge.textContent = saga.status;
    badge.className = "badge status-" + saga.status;
    const order = field("order");
    order.textContent = saga.order;
    order.href = detailUrl(saga.id);
    const id = field("saga");
    id.textContent = saga.id.slice(0, 8);
    id.title = saga.id;
    const reason = field("reason");
    reason.textContent = saga.reason || "";
    reason.title = saga.reason_message || "";
    field("created").textContent = clock(saga.created);
    field("took").textContent = saga.finished ? duration(saga.finished - saga.created) : "";
    const actions = field("actions");
    if (config.actionable.includes(saga.status)) {
      if (!actions.firstElementChild) actions.appendChild(actionsFor(saga.id));
    } else if (actions.firstElementChild && !actions.contains(document.activeElement)) {
      actions.replaceChildren();
    }
  }

  function flash(tr) {
    if (tr.animate) tr.animate([{ background: "#fef9c3" }, { background: "transparent" }], 900);
  }

  function upsert(saga) {
    const known = shown.get(saga.id);
    if (known) {
      if (saga.updated < known.saga.updated) return; // an older view of the same saga
      const changed = known.saga.status !== saga.status;
      known.saga = saga;
      fill(known.tr, saga);
      if (changed) flash(known.tr);
      return;
    }
    if (!matches(saga)) return;
    let before = rows.firstElementChild; // newest first
    while (before && Number(before.dataset.created) > saga.created) before = before.nextElementSibling;
    if (!before && rows.children.length >= config.maxRows) return; // older than all shown
    const tr = rowTemplate.cloneNode(true);
    fill(tr, saga);
    rows.insertBefore(tr, before);
    shown.set(saga.id, { tr, saga });
    flash(tr);
    while (rows.children.length > config.maxRows) {
      const last = rows.lastElementChild;
      shown.delete(last.dataset.saga);
      last.remove();
    }
  }

  function replaceRows(sagas) {
    shown.clear();
    rows.replaceChildren();
    for (const saga of sagas) {
      const tr = rowTemplate.cloneNode(true);
      fill(tr, saga);
      rows.appendChild(tr);
      shown.set(saga.id, { tr, saga });
    }
    markSelected();
  }

  // --- counts and chart -------------------------------------------------------------------

  function setCounts(counts) {
    if (!counts) return;
    for (const [status, el] of countCells) {
      const text = String(counts[status] ?? 0);
      if (el.textContent !== text) el.textContent = text;
    }
  }

  const COLORS = {
    completed: "#15803d", payment_declined: "#b91c1c", insufficient_funds: "#f97316",
    out_of_stock: "#a16207", shipping_unavailable: "#0891b2", service_unavailable: "#7c3aed",
    cancelled: "#64748b",
  };
  const SPARE = ["#db2777", "#4d7c0f", "#0f766e", "#9333ea", "#475569"];
  const chart = { bucketMs: 10000, minutes: 10, buckets: new Map(), dirty: true };
  const svg = document.getElementById("chart");
  const legend = document.getElementById("legend");
  const rate = document.getElementById("rate");

  function colour(series) {
    if (!COLORS[series]) COLORS[series] = SPARE[Object.keys(COLORS).length % SPARE.length];
    return COLORS[series];
  }

  function addFinished(at, series, n) {
    const bucket = Math.floor(at / chart.bucketMs) * chart.bucketMs;
    let tally = chart.buckets.get(bucket);
    if (!tally) chart.buckets.set(bucket, (tally = new Map()));
    tally.set(series, (tally.get(series) || 0) + n);
    chart.dirty = true;
  }

  function drawChart() {
    const slots = Math.round((chart.minutes * 60000) / chart.bucketMs);
    const newest = Math.floor(Date.now() / chart.bucketMs) * chart.bucketMs;
    const oldest = newest - (slots - 1) * chart.bucketMs;
    for (const bucket of chart.buckets.keys()) if (bucket < oldest) chart.buckets.delete(bucket);
    let peak = 1;
    for (const tally of chart.buckets.values()) {
      let sum = 0;
      for (const n of tally.values()) sum += n;
      peak = Math.max(peak, sum);
    }
    const width = 600 / slots;
    const parts = [];
    const seen = new Set();
    for (const [bucket, tally] of chart.buckets) {
      const x = ((bucket - oldest) / chart.bucketMs) * width;
      let y = 110;
      for (const series of ["completed", ...[...tally.keys()].filter((s) => s !== "completed").sort()]) {
        const n = tally.get(series);
        if (!n) continue;
        seen.add(series);
        const h = (n / peak) * 104;
        y -= h;
        parts.push(
          '<rect x="' + (x + 0.5).toFixed(1) + '" y="' + y.toFixed(1) + '" width="' +
          (width - 1).toFixed(1) + '" height="' + h.toFixed(1) + '" fill="' + colour(series) +
          '"><title>' + series + ": " + n + " at " + clock(bucket) + "</title></rect>"
        );
      }
    }
    svg.innerHTML = parts.join("");
    legend.innerHTML = [...seen].sort()
      .map((s) => '<li><i style="background:' + colour(s) + '"></i>' + s + "</li>").join("");
    let done = 0, failed = 0;
    for (const [bucket, tally] of chart.buckets) {
      if (bucket < newest - 5 * chart.bucketMs) continue;
      for (const [series, n] of tally) series === "completed" ? (done += n) : (failed += n);
    }
    rate.textContent = "last minute: " + done + " completed, " + failed + " failed";
    chart.dirty = false;
  }

  // --- frames -----------------------------------------------------------------------------

  function applySnapshot(frame) {
    stats.snapshots++;
    setCounts(frame.counts);
    replaceRows(frame.sagas);
    empty.hidden = rows.children.length > 0;
    chart.bucketMs = frame.chart.bucket_ms;
    chart.minutes = frame.chart.minutes;
    chart.buckets.clear();
    for (const [bucket, series, n] of frame.chart.points) addFinished(bucket, series, n);
    drawChart();
  }

  function applyUpdate(frame) {
    for (const [, , at, kind, , , code] of frame.events) {
      if (kind === "saga_completed") addFinished(at, "completed", 1);
      else if (kind === "saga_failed") addFinished(at, code || "unknown", 1);
    }
    stats.events += frame.events.length;
    for (const saga of frame.sagas) upsert(saga);
    empty.hidden = rows.children.length > 0;
    setCounts(frame.counts);
    if (chart.dirty) drawChart();
    const open = openSaga();
    if (open && frame.sagas.some((saga) => saga.id === open)) refreshDetailSoon();
  }

  function handle(frame) {
    if (frame.type === "snapshot") {
      applySnapshot(frame);
      position = frame.position;
    } else if (frame.type === "update") {
      applyUpdate(frame);
      position = frame.to;
    }
    stats.position = position;
  }

  function setLive(text, state) {
    live.textContent = text;
    live.className = "live " + state;
  }

  function connect() {
    const params = new URLSearchParams();
    if (position) params.set("since", position);
    for (const [key, value] of Object.entries(filters)) if (value) params.set(key, value);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(scheme + "//" + location.host + config.socket + "?" + params);
    let opened = false;
    socket.onopen = () => {
      opened = true;
      setLive("live", "on");
      retryDelay = 500;
    };
    socket.onmessage = (message) => {
      stats.frames++;
      stats.bytes += message.data.length;
      stats.lastFrameAt = Date.now();
      handle(JSON.parse(message.data));
    };
    socket.onclose = (event) => {
      if (event.code === 4403) {
        setLive("signed out: reload the page", "off");
        return;
      }
      // Refused at the handshake (signed out, no longer staff) or the server is away: retry,
      // ever more slowly while it keeps refusing.
      setLive(opened ? "reconnecting…" : "disconnected: retrying (reload if signed out)", "off");
      stats.reconnects++;
      setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, opened ? 5000 : 30000);
    };
  }

  // --- detail and actions -----------------------------------------------------------------

  let detailTimer = null;
  let detailLoadedAt = 0;

  function openSaga() {
    const article = detail.querySelector("[data-saga]");
    return article ? article.dataset.saga : null;
  }

  function markSelected() {
    const open = openSaga();
    for (const { tr, saga } of shown.values()) tr.classList.toggle("selected", saga.id === open);
  }

  async function loadDetail(id, focus) {
    const answer = await fetch(detailUrl(id) + "?fragment=1", { credentials: "same-origin" });
    if (!answer.ok) return;
    detail.innerHTML = await answer.text();
    detailLoadedAt = Date.now();
    markSelected();
    if (focus) detail.focus();
  }

  function refreshDetailSoon() {
    if (detailTimer) return;
    const wait = Math.max(300, 1000 - (Date.now() - detailLoadedAt));
    detailTimer = setTimeout(() => {
      detailTimer = null;
      const open = openSaga();
      if (open && !detail.contains(document.activeElement)) loadDetail(open, false);
      else if (open) refreshDetailSoon(); // the operator is on a button: wait
    }, wait);
  }

  rows.addEventListener("click", (event) => {
    const link = event.target.closest("a.order");
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    const id = link.closest("tr").dataset.saga;
    history.replaceState(null, "", detailUrl(id) + location.search);
    loadDetail(id, true);
  });

  document.addEventListener("submit", async (event) => {
    const form = event.target.closest("form[data-action]");
    if (!form) return;
    event.preventDefault();
    const buttons = form.parentElement.querySelectorAll("button");
    buttons.forEach((b) => (b.disabled = true));
    let message, ok;
    try {
      const answer = await fetch(form.getAttribute("action"), {
        method: "POST",
        body: new FormData(form),
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      const body = await answer.json().catch(() => ({ message: "HTTP " + answer.status }));
      ok = answer.ok && body.ok;
      message = body.message || "HTTP " + answer.status;
    } catch (error) {
      ok = false;
      message = "The server could not be reached: " + error;
    }
    buttons.forEach((b) => (b.disabled = false));
    result.textContent = message;
    result.className = "action-result" + (ok ? "" : " error");
    const id = form.getAttribute("action").split("/").filter(Boolean).slice(-2)[0];
    if (openSaga() === id) loadDetail(id, false);
  });

  setInterval(() => {
    if (chart.dirty || Date.now() % 10000 < 2000) drawChart();
    const ago = stats.lastFrameAt ? Math.round((Date.now() - stats.lastFrameAt) / 1000) : "–";
    footer.textContent =
      "position " + (position || "–") + " · " + stats.frames + " frames, " + stats.events +
      " events · last update " + ago + " s ago";
  }, 2000);

  connect();
})();
