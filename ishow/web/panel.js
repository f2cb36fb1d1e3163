// ishow control panel: polls /api/queue (500 ms) and /api/status (2 s); buttons call /api/control, /api/mute,
// DELETE /api/queue/{id} and /api/tts. The token from this page's own ?token= goes with every API call.
// window.panelLog records what happened (for tests): {event: "api", method, path, status} | {event: "error", …} |
// {event: "tts", bytes, voice} | {event: "audio", what: "playing"|"ended"|"error", duration}.
(() => {
  "use strict";

  const QUEUE_POLL_MS = 500;
  const STATUS_POLL_MS = 2000;
  const REQUEST_TIMEOUT_MS = 60000; // /api/tts synthesizes: give it time

  const params = new URLSearchParams(location.search);
  const token = params.get("token") || "";
  const $ = (id) => document.getElementById(id);

  const panelLog = (window.panelLog = []);
  function logEvent(ev) {
    ev.t = Math.round(performance.now());
    panelLog.push(ev);
    if (panelLog.length > 2000) panelLog.splice(0, panelLog.length - 2000);
  }

  // ---- API ---------------------------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(method, path, body, { raw = false } = {}) {
    const headers = {};
    if (token) headers.Authorization = "Bearer " + token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), REQUEST_TIMEOUT_MS);
    let r;
    try {
      r = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
        signal: ctl.signal,
      });
    } catch (e) {
      throw new ApiError(0, "daemon unreachable (" + (e.name === "AbortError" ? "timed out" : e.message) + ")");
    } finally {
      clearTimeout(timer);
    }
    logEvent({ event: "api", method, path, status: r.status });
    if (!r.ok) {
      let detail = r.statusText;
      try {
        const j = await r.json();
        if (j && typeof j.error === "string") detail = j.error;
      } catch (e) {
        /* not JSON */
      }
      if (r.status === 401) {
        detail = token
          ? "wrong token: the daemon refused the token in this page's URL"
          : "token required: open this panel as /?token=YOUR_TOKEN (server.token in the config)";
      }
      throw new ApiError(r.status, detail);
    }
    return raw ? r : r.json();
  }

  // ---- errors and notices ------------------------------------------------------------------------------------
  let errorSource = "";
  function showError(source, err) {
    const status = err instanceof ApiError && err.status ? " (HTTP " + err.status + ")" : "";
    $("error-text").textContent = err.message + status;
    $("error").hidden = false;
    $("token-form").hidden = !(err instanceof ApiError && err.status === 401);
    errorSource = source;
    logEvent({ event: "error", source, status: err.status || 0, message: err.message });
  }
  function clearError(source) {
    if (errorSource && errorSource === source) {
      $("error").hidden = true;
      errorSource = "";
    }
  }
  $("error-close").addEventListener("click", () => {
    $("error").hidden = true;
    errorSource = "";
  });
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const u = new URL(location.href);
    u.searchParams.set("token", $("token-input").value);
    location.href = u.toString();
  });
  function notice(text) {
    $("notice").textContent = text;
  }

  // an action: run it, report errors, refresh the queue right away
  async function act(label, fn) {
    try {
      const result = await fn();
      clearError("action");
      return result;
    } catch (e) {
      showError("action", new ApiError(e.status || 0, label + " failed: " + e.message));
      return null;
    } finally {
      pollQueue();
    }
  }

  // ---- queue -------------------------------------------------------------------------------------------------
  let paused = false;
  let queueTimer = null;
  let queueBusy = false;

  function fmtAge(s) {
    if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + " s";
    return Math.floor(s / 60) + " m " + String(Math.floor(s % 60)).padStart(2, "0") + " s";
  }
  function cell(row, i, cls) {
    let td = row.children[i];
    if (!td) {
      td = document.createElement("td");
      if (cls) td.className = cls;
      row.appendChild(td);
    }
    return td;
  }
  function setText(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }
  function makeButton(text, action, label, cls) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "small" + (cls ? " " + cls : "");
    b.textContent = text;
    b.dataset.action = action;
    b.setAttribute("aria-label", label);
    return b;
  }

  function renderQueue(snap) {
    const body = $("queue-body");
    const existing = new Map();
    for (const tr of body.children) existing.set(tr.dataset.id, tr);
    const minutes = muteMinutes();
    let prev = null;
    for (const item of snap.items) {
      let tr = existing.get(item.id);
      existing.delete(item.id);
      if (!tr) {
        tr = document.createElement("tr");
        tr.dataset.id = item.id;
      }
      tr.dataset.user = item.user;
      tr.dataset.state = item.state;
      tr.className = item.state;
      const st = cell(tr, 0);
      let badge = st.firstChild;
      if (!badge) {
        badge = document.createElement("span");
        st.appendChild(badge);
      }
      badge.className = "state " + item.state;
      setText(badge, item.state);
      let prio = st.children[1];
      const showPrio = item.priority && item.priority !== "normal";
      if (showPrio && !prio) {
        prio = document.createElement("span");
        prio.className = "prio";
        st.appendChild(prio);
      }
      if (prio) setText(prio, showPrio ? item.priority : "");
      setText(cell(tr, 1, "user"), item.user);
      const msg = cell(tr, 2, "msg");
      setText(msg, item.raw || item.text);
      msg.title = item.raw && item.raw !== item.text ? "spoken: " + item.text : "";
      setText(cell(tr, 3, "voice"), item.voice);
      setText(cell(tr, 4, "num"), fmtAge(item.age_s));
      const acts = cell(tr, 5, "actions");
      if (!acts.firstChild) {
        acts.appendChild(makeButton("Remove", "remove", "Remove this message from " + item.user));
        acts.appendChild(makeButton("Mute", "mute", ""));
      }
      acts.children[0].disabled = item.state === "playing";
      acts.children[1].setAttribute("aria-label", "Mute " + item.user + " for " + minutes + " minutes");
      acts.children[1].title = "Mute " + item.user + " for " + minutes + " min";
      const want = prev ? prev.nextSibling : body.firstChild;
      if (want !== tr) body.insertBefore(tr, want);
      prev = tr;
    }
    for (const tr of existing.values()) tr.remove();
    setText($("q-count"), String(snap.items.length));
    $("queue-empty").hidden = snap.items.length > 0;
    setPaused(!!snap.paused);
    renderMuted(snap.muted || {});
    renderDropped(snap.dropped || { counts: {}, recent: [] });
    setText($("updated"), "updated " + new Date().toLocaleTimeString());
  }

  function setPaused(p) {
    paused = p;
    const b = $("btn-pause");
    b.setAttribute("aria-pressed", String(p));
    setText(b, p ? "Resume" : "Pause");
    b.title = p ? "Continue playing" : "Hold the next utterance (the one playing finishes)";
    const pill = $("play-state");
    setText(pill, p ? "paused" : "playing");
    pill.classList.toggle("paused", p);
  }

  // Accepted messages ("queued": true) dropped later (queue full, paid overflow, stale, removed...): counts by
  // reason and the most recent ones, so an answer of "queued" is never silently broken.
  function renderDropped(dropped) {
    const counts = dropped.counts || {};
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    setText($("dropped-count"), String(total));
    setText($("dropped-reasons"), Object.keys(counts).sort().map((k) => k + " " + counts[k]).join(" · "));
    const ul = $("dropped");
    ul.textContent = "";
    for (const d of dropped.recent || []) {
      const li = document.createElement("li");
      li.dataset.id = d.id;
      const why = document.createElement("span");
      why.className = "why";
      why.textContent = d.reason;
      const who = document.createElement("strong");
      who.textContent = d.user + ": ";
      li.append(why, who, document.createTextNode(d.text));
      ul.appendChild(li);
    }
  }

  function renderMuted(muted) {
    const ul = $("muted");
    const users = Object.keys(muted).sort();
    const have = new Map();
    for (const li of ul.children) have.set(li.dataset.user, li);
    for (const user of users) {
      let li = have.get(user);
      have.delete(user);
      if (!li) {
        li = document.createElement("li");
        li.dataset.user = user;
        const name = document.createElement("strong");
        name.textContent = user;
        const left = document.createElement("span");
        left.className = "left";
        const b = makeButton("Unmute", "unmute", "Unmute " + user);
        li.append(name, left, b);
        ul.appendChild(li);
      }
      const s = Math.max(0, Math.round(muted[user]));
      setText(li.querySelector(".left"), Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0") + " left");
    }
    for (const li of have.values()) li.remove();
  }

  let queueAgain = false;
  async function pollQueue() {
    clearTimeout(queueTimer);
    if (queueBusy) {
      queueAgain = true; // an action asked for a refresh while one is in flight: run one more right after
      return;
    }
    queueBusy = true;
    try {
      renderQueue(await api("GET", "/api/queue"));
      clearError("poll");
    } catch (e) {
      showError("poll", e);
    } finally {
      queueBusy = false;
      clearTimeout(queueTimer);
      queueTimer = setTimeout(pollQueue, queueAgain ? 0 : QUEUE_POLL_MS);
      queueAgain = false;
    }
  }

  // ---- status ------------------------------------------------------------------------------------------------
  function chip(text, cls) {
    const s = document.createElement("span");
    s.className = "chip " + cls;
    s.textContent = text;
    return s;
  }
  const GOOD_SOURCE = new Set(["connected", "running", "live", "listening", "reading", "replaying", "finished"]);
  const BAD_SOURCE = new Set(["failed", "error", "auth_failed"]);
  function renderStatus(st) {
    setText($("st-engine"), st.engine + (st.model_loaded ? "" : st.engine === "f5" ? " (loading)" : ""));
    $("st-engine").title = st.model_loaded ? "model loaded" : "no F5 model loaded";
    setText($("st-rtf"), typeof st.rtf === "number" && st.rtf > 0 ? st.rtf.toFixed(3) : "–");
    setText($("st-backlog"), String(st.backlog ?? "–"));
    const obs = (st.outputs || []).find((o) => o.name === "obs");
    setText($("st-obs"), obs ? String(obs.clients ?? 0) : "off");
    const ows = (st.outputs || []).find((o) => o.name === "obs_websocket");
    const owsBox = $("st-obsws");
    owsBox.textContent = "";
    if (!ows) owsBox.textContent = "off";
    else {
      // connected / auth_failed / unreachable / stalled …, then "missing: <inputs>"; the fixes in the tooltip
      const missing = ows.missing || [];
      const label = ows.status + (missing.length ? " · missing: " + missing.join(", ") : "");
      const cls = ows.status === "connected" ? (missing.length ? "warn" : "ok") : BAD_SOURCE.has(ows.status) ? "bad" : "warn";
      owsBox.appendChild(chip(label, cls));
      owsBox.title = (ows.problems || []).join("\n");
    }
    const src = $("st-sources");
    src.textContent = "";
    const sources = st.sources || [];
    if (!sources.length) src.textContent = "none";
    for (const s of sources) {
      const cls = GOOD_SOURCE.has(s.state) ? "ok" : BAD_SOURCE.has(s.state) ? "bad" : "warn";
      src.appendChild(chip(s.name + ": " + s.state, cls));
    }
  }
  async function pollStatus() {
    try {
      renderStatus(await api("GET", "/api/status"));
      clearError("status");
    } catch (e) {
      if (!errorSource) showError("status", e);
    } finally {
      setTimeout(pollStatus, STATUS_POLL_MS);
    }
  }

  // ---- controls ----------------------------------------------------------------------------------------------
  $("btn-skip").addEventListener("click", () =>
    act("skip", async () => {
      const r = await api("POST", "/api/control", { action: "skip" });
      notice(r.skipped ? "skipped " + r.skipped : "nothing is playing");
    }),
  );
  $("btn-pause").addEventListener("click", () =>
    act(paused ? "resume" : "pause", async () => {
      const r = await api("POST", "/api/control", { action: paused ? "resume" : "pause" });
      setPaused(!!r.paused);
      notice(r.paused ? "paused: the utterance playing finishes, nothing new starts" : "resumed");
    }),
  );
  $("btn-clear").addEventListener("click", () =>
    act("clear", async () => {
      const r = await api("POST", "/api/control", { action: "clear" });
      notice("cleared " + r.cleared + " waiting");
    }),
  );

  function muteMinutes() {
    const v = Number.parseFloat($("mute-minutes").value);
    return Number.isFinite(v) && v > 0 ? Math.min(1440, v) : 10;
  }
  async function mute(user, minutes) {
    return act("mute", async () => {
      const r = await api("POST", "/api/mute", { user, minutes });
      notice(minutes ? "muted " + user + " for " + minutes + " min (" + r.removed + " waiting removed)" : "unmuted " + user);
    });
  }
  $("mute-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const user = $("mute-user").value.trim();
    if (user) mute(user, muteMinutes());
  });
  $("muted").addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-action=unmute]");
    if (b) mute(b.closest("li").dataset.user, 0);
  });
  $("queue-body").addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-action]");
    if (!b) return;
    const tr = b.closest("tr");
    if (b.dataset.action === "remove") {
      act("remove", async () => {
        await api("DELETE", "/api/queue/" + encodeURIComponent(tr.dataset.id));
        notice("removed a message from " + tr.dataset.user);
        tr.remove();
      });
    } else if (b.dataset.action === "mute") {
      mute(tr.dataset.user, muteMinutes());
    }
  });

  // ---- test a voice ------------------------------------------------------------------------------------------
  let ttsUrl = null;
  const player = $("tts-audio");
  for (const what of ["playing", "ended", "error"]) {
    player.addEventListener(what, () => logEvent({ event: "audio", what, duration: player.duration }));
  }
  $("tts-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = $("tts-text").value.trim();
    const voice = $("tts-voice").value;
    if (!text) return;
    const go = $("tts-go");
    go.disabled = true;
    notice("synthesizing…");
    act("test voice", async () => {
      const r = await api("POST", "/api/tts", voice ? { text, voice } : { text }, { raw: true });
      const blob = await r.blob();
      logEvent({ event: "tts", bytes: blob.size, voice: voice || "(auto)" });
      if (ttsUrl) URL.revokeObjectURL(ttsUrl);
      ttsUrl = URL.createObjectURL(blob);
      player.src = ttsUrl;
      notice("playing test voice " + (voice || "(auto)") + " · engine " + (r.headers.get("X-Ishow-Engine") || "?"));
      try {
        await player.play();
      } catch (e) {
        notice("press play to listen (the browser blocked autoplay)");
      }
    }).finally(() => {
      go.disabled = false;
    });
  });

  async function loadVoices() {
    try {
      const v = await api("GET", "/api/voices");
      const sel = $("tts-voice");
      sel.textContent = "";
      const auto = document.createElement("option");
      auto.value = "";
      auto.textContent = "auto (by language)";
      sel.appendChild(auto);
      for (const voice of v.voices) {
        const o = document.createElement("option");
        o.value = voice.id;
        o.textContent = voice.id + (voice.id === v.default ? " (default)" : "");
        sel.appendChild(o);
      }
    } catch (e) {
      showError("poll", e);
    }
  }

  // ---- start -------------------------------------------------------------------------------------------------
  if (token) {
    const obs = new URL("/obs", location.href);
    obs.searchParams.set("token", token);
    $("obs-link").href = obs.toString();
  }
  $("obs-link").title = "Add this URL as a Browser source in OBS; tick “Control audio via OBS”";
  loadVoices();
  pollQueue();
  pollStatus();
})();
